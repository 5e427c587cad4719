"""A batch subscription hands the messages that arrived together to one handler call."""

from __future__ import annotations

import asyncio

import pytest

from shared.messaging.batching import HandlerBatcher
from shared.messaging.errors import PermanentError, TransientError
from tests.fakes.messaging import RecordingBatchHandler
from tests.support.runtime import rsvp_created


async def test_messages_arriving_together_reach_the_handler_in_one_call() -> None:
    handler = RecordingBatchHandler()
    batcher = HandlerBatcher(handler, max_batch=64, max_wait_s=0.01)
    messages = [rsvp_created() for _ in range(5)]

    answers = await asyncio.gather(*(batcher(m) for m in messages))

    assert handler.batches == [messages]
    assert answers == [[m] for m in messages]


async def test_a_full_batch_goes_at_once_without_waiting() -> None:
    handler = RecordingBatchHandler()
    batcher = HandlerBatcher(handler, max_batch=2, max_wait_s=60)
    messages = [rsvp_created() for _ in range(4)]

    async with asyncio.timeout(1):
        await asyncio.gather(*(batcher(m) for m in messages))

    assert handler.batches == [messages[:2], messages[2:]]


async def test_a_message_alone_waits_no_longer_than_max_wait() -> None:
    handler = RecordingBatchHandler()
    batcher = HandlerBatcher(handler, max_batch=64, max_wait_s=0.01)
    message = rsvp_created()

    async with asyncio.timeout(1):
        assert await batcher(message) == [message]


async def test_a_transient_failure_fails_every_message_of_the_batch_without_a_split() -> None:
    messages = [rsvp_created() for _ in range(3)]
    outage = TransientError("database down", reason="db_unavailable")
    handler = RecordingBatchHandler(poison={messages[0].message_id}, error=outage)
    batcher = HandlerBatcher(handler, max_batch=64, max_wait_s=0.01)

    answers = await asyncio.gather(*(batcher(m) for m in messages), return_exceptions=True)

    assert answers == [outage, outage, outage]
    assert handler.batches == [messages]


async def test_a_poison_message_fails_alone_and_the_others_are_applied() -> None:
    messages = [rsvp_created() for _ in range(3)]
    poison = messages[1]
    error = PermanentError("violates a constraint", reason="bad_row")
    handler = RecordingBatchHandler(poison={poison.message_id}, error=error)
    batcher = HandlerBatcher(handler, max_batch=64, max_wait_s=0.01)

    answers = await asyncio.gather(*(batcher(m) for m in messages), return_exceptions=True)

    assert answers == [[messages[0]], error, [messages[2]]]
    assert handler.batches == [messages, [messages[0]], [poison], [messages[2]]]


async def test_a_cancelled_caller_is_left_out_of_its_batch() -> None:
    handler = RecordingBatchHandler()
    batcher = HandlerBatcher(handler, max_batch=64, max_wait_s=0.01)
    kept, dropped = rsvp_created(), rsvp_created()
    cancelled = asyncio.ensure_future(batcher(dropped))
    await asyncio.sleep(0)
    cancelled.cancel()

    assert await batcher(kept) == [kept]
    assert handler.batches == [[kept]]


def test_a_batch_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        HandlerBatcher(RecordingBatchHandler(), max_batch=0, max_wait_s=0.01)
