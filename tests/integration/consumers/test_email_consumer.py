"""The email consumer's reliability promises, against real servers (design §6).

Each test runs ``python -m email_consumer``'s own wiring (``email_runtime``)
in the test's event loop, against a vhost of its own with the product
topology, the run's migrated database and a real aiosmtpd server. Crashes of
the process (SIGKILL, a poison message) are in ``test_email_consumer_crashes``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage
from icalendar import Calendar
from prometheus_client.parser import text_string_to_metric_families

from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import EMAIL_RSVP_EVENTS, EVENTS_EXCHANGE, RETRY_DELAYS_S
from shared.schemas import EmailFailed, EmailSent, Envelope, parse_message
from tests.support.amqp import channel_as, get_one, publish
from tests.support.email_consumer import email_settings, publish_as_calendar, running_email_consumer
from tests.support.messages import (
    MALFORMED,
    MALFORMED_IDS,
    assert_dead_lettered_as_invalid,
    rsvp_created,
)
from tests.support.polling import wait_until
from tests.support.runtime import http_get
from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

FOLLOWUPS_QUEUE = "calendar.followups"
QUEUE = EMAIL_RSVP_EVENTS.name


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def sink_down() -> Iterator[SmtpSink]:
    """An SMTP server whose port is known but that is not running (yet)."""
    sink = SmtpSink()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
async def consumer(
    fresh_broker: BrokerEnv, database_url: str, sink: SmtpSink
) -> AsyncIterator[ConsumerRuntime]:
    async with running_email_consumer(email_settings(fresh_broker, database_url, sink)) as runtime:
        yield runtime


def counted(runtime: ConsumerRuntime, metric: str, **labels: str) -> float:
    value = runtime.metrics.registry.get_sample_value(
        metric, {"consumer": "email", "queue": QUEUE, **labels}
    )
    return value or 0.0


async def take_one(url: str, queue: str, timeout: float) -> AbstractIncomingMessage | None:
    """The next message of ``queue``, acked so that the next call sees the one after it."""
    async with channel_as(url) as channel:
        message = await get_one(channel, queue, timeout=timeout)
        if message is not None:
            await message.ack()
        return message


async def next_followup(broker: BrokerEnv, timeout: float = 15.0) -> AbstractIncomingMessage | None:
    return await take_one(broker.amqp_url("calendar"), FOLLOWUPS_QUEUE, timeout)


async def dead_letter(broker: BrokerEnv, timeout: float = 15.0) -> AbstractIncomingMessage | None:
    return await take_one(broker.amqp_url("ops"), EMAIL_RSVP_EVENTS.dead_letter_queue, timeout)


def followup_of(message: AbstractIncomingMessage | None) -> Envelope[Any]:
    assert message is not None, "no follow-up was published"
    return parse_message(message.body)


def assert_fault_headers(
    dead: AbstractIncomingMessage, *, reason: str, exception_type: str, attempts: int
) -> None:
    """Every header of design §6.5 that a runtime-dead-lettered message carries."""
    headers = dead.headers
    assert headers["x-fault-reason"] == reason
    assert headers["x-exception-type"] == exception_type
    assert str(headers["x-exception-message"])
    assert headers["x-attempts"] == attempts
    failed_at = datetime.fromisoformat(str(headers["x-failed-at"]))
    assert abs((datetime.now(UTC) - failed_at).total_seconds()) < 60
    assert headers["x-original-exchange"] == EVENTS_EXCHANGE
    assert headers["x-original-routing-key"] == ""
    assert headers["x-original-queue"] == QUEUE


async def test_the_mail_has_the_recipient_subject_both_parts_and_a_valid_invitation(
    fresh_broker: BrokerEnv, consumer: ConsumerRuntime, sink: SmtpSink
) -> None:
    message = rsvp_created(email="grace@example.com", name="Grace Hopper")
    event = message.data.event

    await publish_as_calendar(fresh_broker, message)
    (mail,) = await sink.wait_for(1)
    sent = followup_of(await next_followup(fresh_broker))

    assert mail.rcpt_tos == ("grace@example.com",)
    email = mail.message
    assert email["To"].addresses[0].addr_spec == "grace@example.com"
    assert email["To"].addresses[0].display_name == "Grace Hopper"
    assert email["Subject"] == f"You're going: {event.title}"
    assert email["Message-ID"] == f"<{message.message_id}@rsvp.localhost>"
    parts = {part.get_content_type(): part for part in email.walk()}
    assert list(parts) == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    assert event.title in parts["text/plain"].get_content()
    assert "<html" in parts["text/html"].get_content().lower()
    invite = Calendar.from_ical(parts["text/calendar"].get_content())
    assert str(invite["method"]) == "REQUEST"
    (vevent,) = invite.walk("VEVENT")
    assert str(vevent["uid"]) == f"{event.event_id}@rsvp"
    assert str(vevent["summary"]) == event.title
    assert vevent.decoded("dtstart") == event.starts_at.replace(microsecond=0)
    assert str(vevent["attendee"]) == "mailto:grace@example.com"
    assert isinstance(sent, EmailSent)
    assert sent.causation_id == message.message_id
    assert sent.correlation_id == message.correlation_id
    assert sent.data.recipient == "grace@example.com"
    assert sent.data.smtp_message_id == email["Message-ID"]


async def test_smtp_down_retries_after_1s_then_5s_and_delivers_once_it_is_back(
    fresh_broker: BrokerEnv, database_url: str, sink_down: SmtpSink
) -> None:
    settings = email_settings(fresh_broker, database_url, sink_down)
    message = rsvp_created()

    async with running_email_consumer(settings) as runtime:
        await publish_as_calendar(fresh_broker, message)
        retried = lambda n: counted(runtime, "messages_retried_total") >= n  # noqa: E731
        await wait_until(lambda: retried(1), timeout=30, what="the first failed attempt")
        first_failure = time.monotonic()
        await wait_until(lambda: retried(2), timeout=30, what="the second failed attempt")
        second_failure = time.monotonic()
        sink_down.start()  # the server comes back while the message waits 5 s
        (mail,) = await sink_down.wait_for(1, timeout=30)
        delivered = time.monotonic()
        sent = followup_of(await next_followup(fresh_broker))

    # Bounds that tell the tiers apart (1 s, then 5 s, not 0 s, not 30 s) and no more:
    # on a loaded machine a round trip or a late poll adds seconds, never takes a tier away.
    assert RETRY_DELAYS_S[:3] == (1, 5, 30)
    assert 0.8 <= second_failure - first_failure < 4.5
    assert 4.0 <= delivered - second_failure < 25
    assert mail.message["Message-ID"] == f"<{message.message_id}@rsvp.localhost>"
    assert isinstance(sent, EmailSent)
    assert counted(runtime, "messages_handled_total") == 1
    assert await dead_letter(fresh_broker, timeout=0.3) is None


async def test_a_550_goes_straight_to_the_dlq_with_fault_headers_and_email_failed(
    fresh_broker: BrokerEnv, consumer: ConsumerRuntime, sink: SmtpSink
) -> None:
    sink.refuse_recipient("nobody@example.com", "550 5.1.1 No such user here")
    message = rsvp_created(email="nobody@example.com")

    await publish_as_calendar(fresh_broker, message)
    dead = await dead_letter(fresh_broker)
    failed = followup_of(await next_followup(fresh_broker))

    assert dead is not None
    assert dead.message_id == str(message.message_id)
    assert dead.body == message.model_dump_json().encode()
    assert_fault_headers(
        dead, reason="invalid_recipient", exception_type="PermanentError", attempts=1
    )
    assert "550 5.1.1 No such user here" in str(dead.headers["x-exception-message"])
    assert isinstance(failed, EmailFailed)
    assert failed.causation_id == message.message_id
    assert failed.data.reason == "invalid_recipient"
    assert counted(consumer, "messages_retried_total") == 0
    assert sink.received == []


async def test_after_the_last_attempt_the_message_is_in_the_dlq_with_its_attempt_count(
    fresh_broker: BrokerEnv, database_url: str, sink_down: SmtpSink
) -> None:
    # The runtime counts attempts in x-attempts; the message arrives as if the
    # 4 retry tiers (1 s … 120 s) had already been used up, so the next failure
    # is the last one instead of being 2.5 minutes away.
    last_tier = len(RETRY_DELAYS_S)
    message = rsvp_created()
    settings = email_settings(fresh_broker, database_url, sink_down)

    async with running_email_consumer(settings) as runtime:
        await publish_as_calendar(fresh_broker, message, headers={"x-attempts": last_tier})
        dead = await dead_letter(fresh_broker)
        failed = followup_of(await next_followup(fresh_broker))

    assert dead is not None
    assert dead.message_id == str(message.message_id)
    assert_fault_headers(
        dead, reason="retries_exhausted", exception_type="TransientError", attempts=last_tier + 1
    )
    assert f"port {sink_down.port}" in str(dead.headers["x-exception-message"])
    assert isinstance(failed, EmailFailed)
    assert failed.data.reason == "retries_exhausted"
    assert counted(runtime, "messages_retried_total") == 0
    assert counted(runtime, "messages_dead_lettered_total", reason="retries_exhausted") == 1


@pytest.mark.parametrize(("body", "complaint", "content_type"), MALFORMED, ids=MALFORMED_IDS)
async def test_an_invalid_body_is_dead_lettered_with_the_reason_and_consuming_goes_on(
    fresh_broker: BrokerEnv,
    consumer: ConsumerRuntime,
    sink: SmtpSink,
    body: bytes,
    complaint: str,
    content_type: str | None,
) -> None:
    good = rsvp_created()

    async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
        bad_id = await publish(
            calendar, EVENTS_EXCHANGE, "", body, type="rsvp.created", content_type=content_type
        )
    await publish_as_calendar(fresh_broker, good)
    (mail,) = await sink.wait_for(1)
    dead = await dead_letter(fresh_broker)
    sent = followup_of(await next_followup(fresh_broker))

    assert mail.message["Message-ID"] == f"<{good.message_id}@rsvp.localhost>"
    assert_dead_lettered_as_invalid(
        dead, message_id=bad_id, body=body, complaint=complaint, queue=QUEUE
    )
    # an unreadable message names no RSVP, so there is no email.failed to publish
    assert sent.causation_id == good.message_id
    assert await next_followup(fresh_broker, timeout=0.3) is None
    assert consumer.ready


async def test_the_same_message_delivered_twice_gives_one_mail(
    fresh_broker: BrokerEnv, consumer: ConsumerRuntime, sink: SmtpSink
) -> None:
    message = rsvp_created()

    await publish_as_calendar(fresh_broker, message)
    await publish_as_calendar(fresh_broker, message)
    # the copy finds the message handled (or, still in flight, waits 1 s and then does)
    await wait_until(
        lambda: counted(consumer, "messages_duplicate_total") == 1, what="the duplicate"
    )
    first, second = await next_followup(fresh_broker), await next_followup(fresh_broker)

    assert len(sink.received) == 1
    assert counted(consumer, "messages_handled_total") == 1
    assert first is not None
    assert second is not None
    assert first.message_id == second.message_id  # the same email.sent, republished
    assert first.body == second.body


async def test_metrics_count_each_outcome_and_readiness_answers_the_supervisor(
    fresh_broker: BrokerEnv, database_url: str, sink: SmtpSink
) -> None:
    # one message at a time, so the scripted 451 meets the first message published
    settings = email_settings(fresh_broker, database_url, sink, metrics_port=0, concurrency=1)
    sink.reply_next("MAIL", "451 4.3.0 Try again later")
    sink.refuse_recipient("gone@example.com")

    async with running_email_consumer(settings) as runtime:
        assert runtime.health is not None
        port = runtime.health.port
        ready, alive = await http_get(port, "/readyz"), await http_get(port, "/healthz")
        for message in (rsvp_created(), rsvp_created(email="gone@example.com"), rsvp_created()):
            await publish_as_calendar(fresh_broker, message)
        await sink.wait_for(2)  # the third at once, the first after its 1 s retry
        await wait_until(lambda: counted(runtime, "messages_handled_total") == 2, what="handled")
        # handled counts before the ack, in_flight goes down after it
        await wait_until(
            lambda: counted(runtime, "messages_in_flight") == 0, what="nothing in flight"
        )
        status, body = await http_get(port, "/metrics")

    assert ready == (200, b"ready\n")
    assert alive[0] == 200
    assert status == 200
    samples = {
        (sample.name, sample.labels.get("reason")): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.labels.get("queue") == QUEUE
    }
    assert samples[("messages_handled_total", None)] == 2
    assert samples[("messages_retried_total", None)] == 1
    assert samples[("messages_dead_lettered_total", "invalid_recipient")] == 1
    assert samples.get(("messages_duplicate_total", None), 0) == 0  # no series until one
    assert samples[("handler_duration_seconds_count", None)] == 4  # 3 messages, 1 retry
    assert samples[("handler_duration_seconds_sum", None)] > 0
    assert samples[("messages_in_flight", None)] == 0
