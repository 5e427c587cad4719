"""The consumer runtime against the real broker and a real PostgreSQL inbox (design §6).

Each test gets a vhost of its own with the product topology and runs a
runtime as the ``email`` broker user with a dummy handler: the runtime is
under test, not the email consumer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aio_pika.abc import AbstractChannel

from devtools.env import EnvSettings
from shared.messaging.errors import PermanentError, TransientError
from shared.messaging.followups import followup_message_id
from shared.messaging.inbox import PostgresInbox
from shared.messaging.publisher import Publisher, PublishNotConfirmed
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import (
    COMMANDS_EXCHANGE,
    EMAIL_COMMANDS,
    EMAIL_RSVP_EVENTS,
    EVENTS_EXCHANGE,
    RETRY_DELAYS_S,
)
from shared.schemas import EmailSend, Envelope, RsvpMessage
from tests.support.amqp import channel_as, get_one, publish
from tests.support.runtime import (
    RecordingHandler,
    drop_broker_connections,
    email_failed_for,
    email_send,
    email_sent_for,
    http_get,
    rsvp_created,
    running,
)
from tests.support.services import BrokerEnv, create_database, drop_database, new_resource_name

pytestmark = pytest.mark.integration

FOLLOWUPS_QUEUE = "calendar.followups"


@pytest.fixture(scope="module")
async def inbox(env_settings: EnvSettings) -> AsyncIterator[PostgresInbox]:
    name = new_resource_name()
    url = await create_database(env_settings, name)
    pool = await asyncpg.create_pool(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        inbox = PostgresInbox(pool)
        await inbox.ensure_schema()
        yield inbox
    finally:
        await pool.close()
        await drop_database(env_settings, name)


def email_runtime(broker: BrokerEnv, inbox: PostgresInbox, **options: Any) -> ConsumerRuntime:
    return ConsumerRuntime(
        "email", broker.amqp_url("email"), inbox=inbox, producer="email_consumer", **options
    )


async def publish_as_calendar(
    broker: BrokerEnv,
    message: Envelope[Any],
    *,
    exchange: str = EVENTS_EXCHANGE,
    routing_key: str = "",
    headers: dict[str, Any] | None = None,
) -> None:
    async with channel_as(broker.amqp_url("calendar")) as channel:
        await Publisher(channel).publish(
            message, exchange=exchange, routing_key=routing_key, headers=headers
        )


async def assert_empty(channel: AbstractChannel, queue: str) -> None:
    leftover = await get_one(channel, queue, timeout=0.3)
    assert leftover is None, f"{queue} still holds {leftover!r}"


async def test_handled_message_publishes_its_followup_to_calendar_and_is_acked(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    handler = RecordingHandler()
    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)
    message = rsvp_created()

    async with running(runtime):
        await publish_as_calendar(fresh_broker, message)
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            followup = await get_one(calendar, FOLLOWUPS_QUEUE)

    assert followup is not None
    assert followup.type == "email.sent"
    assert followup.correlation_id == str(message.correlation_id)
    assert followup.message_id == str(
        followup_message_id("email/email.rsvp_events", message.message_id, "email.sent", 0)
    )
    assert followup.headers["x-attempts"] == 0
    assert str(followup.headers["traceparent"]).startswith(f"00-{message.correlation_id.hex}-")
    assert [call.message_id for call in handler.calls] == [message.message_id]
    assert await inbox.seen("email/email.rsvp_events", message.message_id) is not None
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        await assert_empty(email, EMAIL_RSVP_EVENTS.name)


async def test_transient_error_waits_in_the_1s_retry_queue_and_succeeds_on_the_second_attempt(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def fail_once(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        if call == 1:
            raise TransientError("SMTP 421 try again later")
        return []

    handler = RecordingHandler(fail_once)
    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(
        EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage, on_dead_letter=email_failed_for
    )

    async with running(runtime):
        await publish_as_calendar(fresh_broker, rsvp_created())
        await handler.wait_for_calls(2)

    assert len(handler.calls) == 2
    assert handler.calls[0].message_id == handler.calls[1].message_id
    assert handler.call_times[1] - handler.call_times[0] >= RETRY_DELAYS_S[0] * 0.9
    assert (
        runtime.metrics.registry.get_sample_value(
            "messages_retried_total", {"consumer": "email", "queue": EMAIL_RSVP_EVENTS.name}
        )
        == 1
    )
    async with channel_as(fresh_broker.amqp_url("ops")) as ops:
        await assert_empty(ops, EMAIL_RSVP_EVENTS.dead_letter_queue)


async def test_exhausted_retries_dead_letter_with_attempts_fault_headers_and_failure_followup(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def always_fail(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        raise TransientError("SMTP 421 still busy")

    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(
        EMAIL_RSVP_EVENTS,
        RecordingHandler(always_fail),
        accepts=RsvpMessage,
        on_dead_letter=email_failed_for,
    )
    message = rsvp_created()
    last_tier = len(RETRY_DELAYS_S)

    async with running(runtime):
        await publish_as_calendar(fresh_broker, message, headers={"x-attempts": last_tier})
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue)
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            failure = await get_one(calendar, FOLLOWUPS_QUEUE)

    assert dead is not None
    assert dead.message_id == str(message.message_id)
    assert dead.headers["x-fault-reason"] == "retries_exhausted"
    assert dead.headers["x-attempts"] == last_tier + 1
    assert dead.headers["x-exception-type"] == "TransientError"
    assert dead.headers["x-exception-message"] == "SMTP 421 still busy"
    assert dead.headers["x-original-exchange"] == EVENTS_EXCHANGE
    assert dead.headers["x-original-queue"] == EMAIL_RSVP_EVENTS.name
    assert failure is not None
    assert failure.type == "email.failed"
    assert b'"reason":"retries_exhausted"' in failure.body


async def test_retried_message_keeps_its_first_route_and_attempt_count_when_dead_lettered(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def transient_then_permanent(
        message: Envelope[Any], call: int
    ) -> Sequence[Envelope[Any]]:
        if call == 1:
            raise TransientError("connection reset")
        raise PermanentError("mailbox disabled")

    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(
        EMAIL_RSVP_EVENTS, RecordingHandler(transient_then_permanent), accepts=RsvpMessage
    )

    async with running(runtime):
        await publish_as_calendar(fresh_broker, rsvp_created())
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue, timeout=10)

    assert dead is not None
    assert dead.headers["x-attempts"] == 2
    assert dead.headers["x-original-exchange"] == EVENTS_EXCHANGE
    assert dead.headers["x-original-routing-key"] == ""
    assert dead.headers["x-last-error"] == "TransientError: connection reset"
    assert dead.headers["x-fault-reason"] == "permanent"
    assert "x-death" in dead.headers  # the broker's record of the delay queue survives


async def test_unexpected_exception_is_retried_like_a_transient_error_then_dead_lettered(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def buggy(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        raise ZeroDivisionError("division by zero")

    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(EMAIL_RSVP_EVENTS, RecordingHandler(buggy), accepts=RsvpMessage)

    async with running(runtime):
        await publish_as_calendar(
            fresh_broker, rsvp_created(), headers={"x-attempts": len(RETRY_DELAYS_S)}
        )
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue)

    assert dead is not None
    assert dead.headers["x-fault-reason"] == "retries_exhausted"
    assert dead.headers["x-exception-type"] == "ZeroDivisionError"


async def test_permanent_error_goes_straight_to_the_dlq_with_every_fault_header(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def reject(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        raise PermanentError("550 no such user", reason="smtp_rejected")

    handler = RecordingHandler(reject)
    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(EMAIL_COMMANDS, handler, accepts=EmailSend, on_dead_letter=email_failed_for)
    command = email_send()

    async with running(runtime):
        await publish_as_calendar(
            fresh_broker, command, exchange=COMMANDS_EXCHANGE, routing_key=EMAIL_COMMANDS.name
        )
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, EMAIL_COMMANDS.dead_letter_queue)
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            failure = await get_one(calendar, FOLLOWUPS_QUEUE)

    assert len(handler.calls) == 1
    assert dead is not None
    assert dead.body == command.model_dump_json().encode()
    assert dead.message_id == str(command.message_id)
    assert dead.type == "email.send"
    assert dead.headers["x-fault-reason"] == "smtp_rejected"
    assert dead.headers["x-exception-type"] == "PermanentError"
    assert dead.headers["x-exception-message"] == "550 no such user"
    assert dead.headers["x-attempts"] == 1
    assert dead.headers["x-original-exchange"] == COMMANDS_EXCHANGE
    assert dead.headers["x-original-routing-key"] == EMAIL_COMMANDS.name
    assert dead.headers["x-original-queue"] == EMAIL_COMMANDS.name
    assert datetime.fromisoformat(str(dead.headers["x-failed-at"])).utcoffset() is not None
    assert failure is not None
    assert failure.type == "email.failed"
    assert failure.correlation_id == str(command.correlation_id)


async def test_a_failing_on_dead_letter_still_dead_letters_the_message(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def reject(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        raise PermanentError("550 no such user")

    def broken_on_dead_letter(message: Envelope[Any], error: Exception) -> list[Envelope[Any]]:
        raise KeyError("bug in the failure follow-up")

    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(
        EMAIL_RSVP_EVENTS,
        RecordingHandler(reject),
        accepts=RsvpMessage,
        on_dead_letter=broken_on_dead_letter,
    )
    message = rsvp_created()

    async with running(runtime):
        await publish_as_calendar(fresh_broker, message)
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue)

    assert dead is not None
    assert dead.message_id == str(message.message_id)
    assert dead.headers["x-fault-reason"] == "permanent"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"this is not json", "json"),
        (b'{"type": "rsvp.created", "producer": "tests"}', "Field required"),
    ],
    ids=["non-json", "schema-invalid"],
)
async def test_invalid_body_is_dead_lettered_as_invalid_message_and_consuming_goes_on(
    fresh_broker: BrokerEnv, inbox: PostgresInbox, body: bytes, complaint: str
) -> None:
    handler = RecordingHandler()
    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)
    good = rsvp_created()

    async with running(runtime):
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            bad_id = await publish(calendar, EVENTS_EXCHANGE, "", body, type="rsvp.created")
        await publish_as_calendar(fresh_broker, good)
        await handler.wait_for_calls(1)
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue)

    assert [call.message_id for call in handler.calls] == [good.message_id]
    assert dead is not None
    assert dead.message_id == bad_id
    assert dead.body == body
    assert dead.headers["x-fault-reason"] == "invalid_message"
    assert dead.headers["x-exception-type"] == "InvalidMessageError"
    assert complaint.lower() in str(dead.headers["x-exception-message"]).lower()


async def test_same_message_twice_runs_the_handler_once_and_republishes_the_same_followup(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    handler = RecordingHandler()
    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)
    message = rsvp_created()

    async with running(runtime):
        await publish_as_calendar(fresh_broker, message)
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            first = await get_one(calendar, FOLLOWUPS_QUEUE)
            await publish_as_calendar(fresh_broker, message)
            second = await get_one(calendar, FOLLOWUPS_QUEUE)

    assert len(handler.calls) == 1
    assert first is not None
    assert second is not None
    assert second.message_id == first.message_id
    assert second.body == first.body
    assert (
        runtime.metrics.registry.get_sample_value(
            "messages_duplicate_total", {"consumer": "email", "queue": EMAIL_RSVP_EVENTS.name}
        )
        == 1
    )
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        await assert_empty(email, EMAIL_RSVP_EVENTS.name)


async def test_stop_lets_an_in_flight_handler_finish_and_ack(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    started = asyncio.Event()
    finished: list[float] = []

    async def slow(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(time.monotonic())
        return []

    runtime = email_runtime(fresh_broker, inbox)
    runtime.subscribe(EMAIL_RSVP_EVENTS, RecordingHandler(slow), accepts=RsvpMessage)

    async with running(runtime) as run:
        await publish_as_calendar(fresh_broker, rsvp_created())
        await asyncio.wait_for(started.wait(), 10)
        runtime.stop()
        await asyncio.wait_for(run, 10)

    assert len(finished) == 1
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        await assert_empty(email, EMAIL_RSVP_EVENTS.name)


async def test_stop_returns_a_message_whose_handler_outlives_the_grace_period(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    cancelled = asyncio.Event()

    async def never_finishes(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return []

    handler = RecordingHandler(never_finishes)
    runtime = email_runtime(fresh_broker, inbox, grace_period_s=0.2)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)
    message = rsvp_created()

    async with running(runtime):
        await publish_as_calendar(fresh_broker, message)
        await handler.wait_for_calls(1)

    assert cancelled.is_set()
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        returned = await get_one(email, EMAIL_RSVP_EVENTS.name)
    assert returned is not None
    assert returned.message_id == str(message.message_id)


async def test_handlers_of_different_messages_run_concurrently(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    both_started = asyncio.Barrier(2)

    async def meet(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        await asyncio.wait_for(both_started.wait(), 5)  # times out if run one by one
        return []

    handler = RecordingHandler(meet)
    runtime = email_runtime(fresh_broker, inbox, concurrency=2)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)

    async with running(runtime):
        await publish_as_calendar(fresh_broker, rsvp_created())
        await publish_as_calendar(fresh_broker, rsvp_created())
        await handler.wait_for_calls(2)
        await asyncio.sleep(0.2)

    assert (
        runtime.metrics.registry.get_sample_value(
            "messages_handled_total", {"consumer": "email", "queue": EMAIL_RSVP_EVENTS.name}
        )
        == 2
    )


async def test_runtime_resumes_consuming_after_the_broker_drops_its_connection(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    handler = RecordingHandler()
    runtime = ConsumerRuntime(
        "email",
        fresh_broker.amqp_url("email") + "?reconnect_interval=0.5",
        inbox=inbox,
        producer="email_consumer",
    )
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)

    async with running(runtime):
        await drop_broker_connections(fresh_broker)
        await asyncio.sleep(0.2)
        await publish_as_calendar(fresh_broker, rsvp_created())
        await handler.wait_for_calls(1, timeout=15)
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            followup = await get_one(calendar, FOLLOWUPS_QUEUE)

    assert followup is not None
    assert followup.type == "email.sent"


async def test_readyz_answers_200_while_consuming_and_503_once_stopping(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    release = asyncio.Event()

    async def wait_for_release(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        await release.wait()
        return []

    handler = RecordingHandler(wait_for_release)
    runtime = email_runtime(fresh_broker, inbox, metrics_port=0)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)
    assert runtime.health is not None

    async with running(runtime):
        port = runtime.health.port
        consuming = await http_get(port, "/readyz")
        alive = await http_get(port, "/healthz")
        metrics = await http_get(port, "/metrics")
        await publish_as_calendar(fresh_broker, rsvp_created())
        await handler.wait_for_calls(1)
        runtime.stop()
        await asyncio.sleep(0.2)
        draining = await http_get(port, "/readyz")
        release.set()

    assert consuming[0] == 200
    assert alive[0] == 200
    assert metrics[0] == 200
    assert b"messages_in_flight" in metrics[1]
    assert draining[0] == 503


async def test_publisher_refuses_an_unroutable_message(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("calendar")) as channel:
        with pytest.raises(PublishNotConfirmed):
            await Publisher(channel).publish(
                email_send(), exchange=COMMANDS_EXCHANGE, routing_key="nobody.listens"
            )


async def test_inbox_keeps_the_first_record_of_a_message(inbox: PostgresInbox) -> None:
    message = rsvp_created()

    await inbox.record("email/test", message.message_id, [b'{"first": 1}'])
    await inbox.record("email/test", message.message_id, [b'{"second": 2}'])

    assert await inbox.seen("email/test", message.message_id) == [b'{"first": 1}']
    assert await inbox.seen("push/test", message.message_id) is None


async def test_two_copies_in_flight_at_once_run_the_handler_once(
    fresh_broker: BrokerEnv, inbox: PostgresInbox
) -> None:
    async def slow(message: Envelope[Any], call: int) -> Sequence[Envelope[Any]]:
        await asyncio.sleep(1.5)  # the second copy arrives while this one still runs
        return [email_sent_for(message)]

    handler = RecordingHandler(slow)
    runtime = email_runtime(fresh_broker, inbox, concurrency=4)
    runtime.subscribe(EMAIL_RSVP_EVENTS, handler, accepts=RsvpMessage)
    message = rsvp_created()

    async with running(runtime):
        await publish_as_calendar(fresh_broker, message)
        await publish_as_calendar(fresh_broker, message)  # e.g. a redelivery after a blip
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            first = await get_one(calendar, FOLLOWUPS_QUEUE, timeout=10)
            # the busy copy waits in the 1 s retry tier and comes back as a duplicate
            second = await get_one(calendar, FOLLOWUPS_QUEUE, timeout=10)

    assert len(handler.calls) == 1
    assert first is not None
    assert second is not None
    assert first.message_id == second.message_id  # the same follow-up, republished
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        await assert_empty(email, EMAIL_RSVP_EVENTS.name)
