"""Dead-letter replay against the live broker (design §6.5-6.6): the engine and the email consumer.

Every test gets a vhost of its own (``fresh_broker``) and works as the
``ops`` broker user, the account operators replay with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.dlq.office import BrokerRefused, DeadLetterOffice
from shared.dlq.passes import PassCounts, QueueBusy, ReplayTarget
from shared.dlq.selection import REPLAY_COUNT, REPLAYED_AT, DeadLetter, Filter
from shared.messaging import faults
from shared.messaging.topology import (
    COMMANDS_EXCHANGE,
    EMAIL_COMMANDS,
    EMAIL_RSVP_EVENTS,
    PUSH_COMMANDS,
    PUSH_RSVP_EVENTS,
)
from tests.support.amqp import channel_as, get_one, publish
from tests.support.dlq import dead_letter, depth, drain
from tests.support.email_consumer import email_settings, publish_as_calendar, running_email_consumer
from tests.support.messages import email_send, rsvp_created
from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

DLQ = EMAIL_RSVP_EVENTS.dead_letter_queue


@pytest.fixture
async def office(fresh_broker: BrokerEnv) -> AsyncIterator[DeadLetterOffice]:
    # a small window, so the tests cross the pass's last-stretch hand-over often
    async with DeadLetterOffice(fresh_broker.amqp_url("ops"), window=32) as office:
        yield office


async def test_permanent_failure_is_dead_lettered_and_replay_after_the_fix_sends_one_email(
    fresh_broker: BrokerEnv, database_url: str, office: DeadLetterOffice
) -> None:
    message = rsvp_created()
    with SmtpSink() as sink:
        settings = email_settings(fresh_broker, database_url, sink)
        async with running_email_consumer(settings):
            sink.reply_next("RCPT", "550 5.1.1 No such user")
            await publish_as_calendar(fresh_broker, message)
            (letter,) = await _wait_for_dead_letters(office, 1)

            assert letter.message_id == str(message.message_id)
            assert letter.reason == "invalid_recipient"
            assert letter.exception_type == "PermanentError"
            assert "550" in (letter.exception_message or "")
            assert letter.original_queue == EMAIL_RSVP_EVENTS.name
            assert letter.failed_at is not None
            assert sink.received == []

            # the cause is fixed (the sink accepts the recipient now): replay
            outcome = await office.replay(DLQ, Filter())
            (mail,) = await sink.wait_for(1)

            # a second copy of the same message (a replay run twice) sends nothing more
            await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [message])
            await office.replay(DLQ, Filter())
            await _wait_until_empty(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")
    assert outcome.replayed == 1
    assert mail.rcpt_tos == (message.data.attendee.email,)
    assert len(sink.received) == 1
    assert await depth(fresh_broker, DLQ, "ops") == 0


async def test_replayed_copy_keeps_its_id_resets_attempts_and_counts_the_replay(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    message = rsvp_created()
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [message])

    await office.replay(DLQ, Filter())

    (copy,) = await drain(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")
    assert copy.message_id == str(message.message_id)
    assert copy.headers["x-attempts"] == 0
    assert copy.headers[REPLAY_COUNT] == 1
    assert REPLAYED_AT in copy.headers
    assert faults.FAULT_REASON not in copy.headers
    assert copy.headers[faults.ORIGINAL_EXCHANGE] == "rsvp.events"
    assert copy.body == message.model_dump_json().encode()


async def test_dry_run_changes_nothing(fresh_broker: BrokerEnv, office: DeadLetterOffice) -> None:
    messages = [rsvp_created() for _ in range(100)]
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, messages, reasons=("a", "b"))

    outcome = await office.replay(DLQ, Filter(reason="a"), dry_run=True)

    assert (outcome.matched, outcome.replayed) == (50, 0)
    assert await depth(fresh_broker, EMAIL_RSVP_EVENTS.name, "email") == 0
    left = await drain(fresh_broker, DLQ, "ops")
    assert [m.message_id for m in left] == [str(m.message_id) for m in messages]
    assert all(m.headers[faults.FAULT_REASON] in ("a", "b") for m in left)


async def test_filtered_replay_moves_only_the_selected_and_keeps_the_rest_in_order(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    messages = [rsvp_created() for _ in range(300)]
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, messages, reasons=("smtp", "x", "y"))

    outcome = await office.replay(DLQ, Filter(reason="smtp"), limit=90)

    picked = [str(m.message_id) for m in messages[::3][:90]]
    assert (outcome.matched, outcome.replayed) == (100, 90)
    replayed = await drain(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")
    assert [m.message_id for m in replayed] == picked
    left = await drain(fresh_broker, DLQ, "ops")
    assert [m.message_id for m in left] == [
        str(m.message_id) for m in messages if str(m.message_id) not in picked
    ]


async def test_time_window_and_message_id_filters(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    old, new = rsvp_created(), rsvp_created()
    long_ago = datetime.now(UTC) - timedelta(days=2)
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [old], failed_at=long_ago)
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [new])

    recent = await office.replay(
        DLQ, Filter(since=datetime.now(UTC) - timedelta(hours=1)), dry_run=True
    )
    by_id = await office.replay(DLQ, Filter(message_ids=frozenset({str(old.message_id)})))

    assert recent.matched == 1
    assert by_id.replayed == 1
    (replayed,) = await drain(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")
    assert replayed.message_id == str(old.message_id)


async def test_broker_dead_lettered_message_is_replayed_to_its_origin_from_x_death(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    message_id = await _rejected_command(fresh_broker)
    (letter,) = await _wait_for_dead_letters(office, 1, EMAIL_COMMANDS.dead_letter_queue)
    outcome = await office.replay(EMAIL_COMMANDS.dead_letter_queue, Filter(reason="rejected"))

    assert (letter.reason, letter.original_queue) == ("rejected", EMAIL_COMMANDS.name)
    assert (letter.original_exchange, letter.original_routing_key) == (
        COMMANDS_EXCHANGE,
        EMAIL_COMMANDS.name,
    )
    assert outcome.replayed == 1
    (copy,) = await drain(fresh_broker, EMAIL_COMMANDS.name, "email")
    assert copy.message_id == message_id
    assert copy.headers[REPLAY_COUNT] == 1


async def test_replay_via_the_original_fanout_exchange_reaches_every_bound_queue(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    message = rsvp_created()
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [message])

    outcome = await office.replay(DLQ, Filter(), route=ReplayTarget.EXCHANGE)

    assert outcome.replayed == 1
    (to_email,) = await drain(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")
    (to_push,) = await drain(fresh_broker, PUSH_RSVP_EVENTS.name, "push")
    assert to_email.message_id == to_push.message_id == str(message.message_id)
    assert to_email.headers[REPLAY_COUNT] == 1
    assert await depth(fresh_broker, DLQ, "ops") == 0


async def test_replay_via_the_original_direct_exchange_reaches_only_the_origin_queue(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    message_id = await _rejected_command(fresh_broker)
    await _wait_for_dead_letters(office, 1, EMAIL_COMMANDS.dead_letter_queue)

    outcome = await office.replay(
        EMAIL_COMMANDS.dead_letter_queue, Filter(), route=ReplayTarget.EXCHANGE
    )

    assert outcome.replayed == 1
    (copy,) = await drain(fresh_broker, EMAIL_COMMANDS.name, "email")
    assert copy.message_id == message_id
    assert await depth(fresh_broker, PUSH_COMMANDS.name, "push") == 0


async def test_a_replay_the_broker_refuses_says_so_and_keeps_the_letter(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    message = rsvp_created()
    gone = faults.SourceRoute("no.such.exchange", EMAIL_RSVP_EVENTS.name)
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [message], origin=gone)

    with pytest.raises(BrokerRefused, match=r"no\.such\.exchange"):
        await office.replay(DLQ, Filter(), route=ReplayTarget.EXCHANGE)

    # the unconfirmed letter goes back to the DLQ when the broker closes the channel
    (letter,) = await _wait_for_dead_letters(office, 1)
    assert letter.message_id == str(message.message_id)


async def test_purge_drops_only_the_named_message(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    messages = [email_send() for _ in range(5)]
    await dead_letter(fresh_broker, EMAIL_COMMANDS, messages)
    doomed = str(messages[2].message_id)

    dropped = await office.drop(
        EMAIL_COMMANDS.dead_letter_queue, Filter(message_ids=frozenset({doomed}))
    )

    assert dropped == 1
    left = await drain(fresh_broker, EMAIL_COMMANDS.dead_letter_queue, "ops")
    assert [m.message_id for m in left] == [
        str(m.message_id) for m in messages if str(m.message_id) != doomed
    ]


async def test_browse_pages_with_a_cursor_and_keeps_the_queue(
    fresh_broker: BrokerEnv, office: DeadLetterOffice
) -> None:
    messages = [rsvp_created() for _ in range(7)]
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, messages)

    first = await office.browse(DLQ, Filter(), limit=4)
    second = await office.browse(DLQ, Filter(), limit=4, cursor=first.next_cursor)

    ids = [letter.message_id for letter in (*first.items, *second.items)]
    assert ids == [str(m.message_id) for m in messages]
    assert second.next_cursor is None
    assert await depth(fresh_broker, DLQ, "ops") == 7


async def test_a_second_pass_over_the_same_queue_is_refused(fresh_broker: BrokerEnv) -> None:
    office = DeadLetterOffice(fresh_broker.amqp_url("ops"), busy_wait_s=0.1)
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [rsvp_created() for _ in range(200)])
    started = asyncio.Event()

    def on_progress(counts: PassCounts) -> None:
        started.set()

    first = asyncio.create_task(office.replay(DLQ, Filter(), rate=400, on_progress=on_progress))
    await started.wait()
    with pytest.raises(QueueBusy):
        await office.replay(DLQ, Filter())
    outcome = await first
    await office.aclose()
    assert outcome.replayed == 200


# -- helpers ---------------------------------------------------------------------------------


async def _rejected_command(broker: BrokerEnv) -> str:
    """An email command the consumer rejects: the broker dead-letters it, with ``x-death``."""
    async with channel_as(broker.amqp_url("calendar")) as channel:
        message_id = await publish(channel, COMMANDS_EXCHANGE, EMAIL_COMMANDS.name)
    async with channel_as(broker.amqp_url("email")) as channel:
        delivery = await get_one(channel, EMAIL_COMMANDS.name)
        assert delivery is not None
        await delivery.reject(requeue=False)
    return message_id


async def _wait_for_dead_letters(
    office: DeadLetterOffice, count: int, queue: str = DLQ, timeout: float = 10.0
) -> list[DeadLetter]:
    """Browse ``queue`` once ``count`` letters are in it: the broker dead-letters asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        depths = {d.name: d.messages for d in await office.depths()}
        if depths[queue] >= count:
            return (await office.browse(queue, Filter())).items
        if time.monotonic() > deadline:
            raise AssertionError(f"{depths[queue]} of {count} dead letters arrived in {queue}")
        await asyncio.sleep(0.05)


async def _wait_until_empty(
    broker: BrokerEnv, queue: str, user: str, timeout: float = 10.0
) -> None:
    deadline = time.monotonic() + timeout
    while await depth(broker, queue, user) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue} did not drain")
        await asyncio.sleep(0.05)
