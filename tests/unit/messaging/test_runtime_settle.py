"""A delivery whose follow-up publish fails is settled again in place, not given back at once.

Pure unit test: an in-process inbox, a publisher that refuses a few times,
and a stand-in for the broker's delivery that records ack and nack.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from aio_pika.abc import AbstractMessage

from shared.messaging import delivery, holding
from shared.messaging.delivery import DeliveryProcessor
from shared.messaging.errors import NotAttempted
from shared.messaging.inbox import Claim
from shared.messaging.metrics import RuntimeMetrics
from shared.messaging.publisher import PublishNotConfirmed
from shared.messaging.subscription import Subscription
from shared.messaging.topology import EMAIL_RSVP_EVENTS
from shared.schemas import Envelope, RsvpCreated
from tests.fakes.messaging import MemoryInbox
from tests.support.runtime import email_send, email_sent_for, rsvp_created


@dataclass
class RefusingPublisher:
    """Refuses the first ``refusals`` publishes, then confirms."""

    refusals: int
    published: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, Any]] = field(default_factory=list)

    async def publish_raw(self, message: AbstractMessage, exchange: str, routing_key: str) -> None:
        if self.refusals:
            self.refusals -= 1
            raise PublishNotConfirmed(f"{exchange}/{routing_key}: nack")
        self.published.append((exchange, routing_key))
        self.headers.append(dict(message.headers))


@dataclass
class FakeDelivery:
    body: bytes
    delivery_tag: int | None = None
    channel: Any = field(default_factory=lambda: SimpleNamespace(is_closed=False))
    correlation_id: str | None = None
    message_id: str | None = None
    type: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    exchange: str = "rsvp.events"
    routing_key: str = ""
    content_type: str | None = "application/json"
    content_encoding: str | None = None
    priority: int | None = None
    reply_to: str | None = None
    timestamp: Any = None
    app_id: str | None = None
    settled: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append(f"nack(requeue={requeue})")


def _processor(publisher: RefusingPublisher, calls: list[Envelope[Any]]) -> DeliveryProcessor:
    async def handler(message: Envelope[Any]) -> list[Envelope[Any]]:
        calls.append(message)
        return [email_sent_for(message)]

    return DeliveryProcessor(
        Subscription(EMAIL_RSVP_EVENTS, (RsvpCreated,), handler, None, "email/email.rsvp_events"),
        inbox=MemoryInbox(),
        publisher=publisher,  # type: ignore[arg-type]
        metrics=RuntimeMetrics(),
        runtime="email",
    )


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "SETTLE_PAUSES_S", (0.0, 0.0, 0.0))


async def test_a_refused_follow_up_is_published_again_and_the_handler_runs_once() -> None:
    publisher, calls = RefusingPublisher(refusals=2), []
    message = rsvp_created()
    fake = FakeDelivery(message.model_dump_json().encode())

    await _processor(publisher, calls).process(fake)  # type: ignore[arg-type]

    assert len(calls) == 1  # the inbox recorded it: later tries only republish
    assert len(publisher.published) == 1
    assert fake.settled == ["ack"]


async def test_still_refused_after_the_last_pause_it_goes_back_to_its_queue() -> None:
    publisher, calls = RefusingPublisher(refusals=10), []
    fake = FakeDelivery(rsvp_created().model_dump_json().encode())

    await _processor(publisher, calls).process(fake)  # type: ignore[arg-type]

    assert len(calls) == 1
    assert publisher.published == []
    assert fake.settled == ["nack(requeue=True)"]


async def test_a_closed_channel_is_not_waited_on() -> None:
    publisher, calls = RefusingPublisher(refusals=10), []
    fake = FakeDelivery(rsvp_created().model_dump_json().encode())
    fake.channel.is_closed = True

    await _processor(publisher, calls).process(fake)  # type: ignore[arg-type]

    assert publisher.refusals == 9  # one try, then back (the broker requeues it anyway)
    assert fake.settled == ["nack(requeue=True)"]


async def test_a_type_the_subscription_does_not_take_is_dead_lettered_unhandled() -> None:
    publisher, calls = RefusingPublisher(refusals=0), []
    fake = FakeDelivery(email_send().model_dump_json().encode())

    await _processor(publisher, calls).process(fake)  # type: ignore[arg-type]

    assert calls == []
    assert publisher.published == [("dlx", EMAIL_RSVP_EVENTS.name)]
    assert publisher.headers[0]["x-fault-reason"] == "unexpected_type"
    assert fake.settled == ["ack"]


class AwayInbox(MemoryInbox):
    """An inbox whose database is away for the first ``outages`` claims."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    def claim(self, consumer: str, message_id: UUID) -> AbstractAsyncContextManager[Claim]:
        if self.outages:
            self.outages -= 1
            raise NotAttempted("inbox unreachable: ConnectionRefusedError()")
        return super().claim(consumer, message_id)


def _processor_on(inbox: MemoryInbox, publisher: RefusingPublisher, calls: list[Any]) -> Any:
    processor = _processor(publisher, calls)
    processor._inbox = inbox
    return processor


async def test_with_the_inbox_away_the_delivery_is_held_and_no_retry_tier_is_used() -> None:
    publisher, calls = RefusingPublisher(refusals=0), []
    fake = FakeDelivery(rsvp_created().model_dump_json().encode())

    await _processor_on(AwayInbox(outages=3), publisher, calls).process(fake)

    assert len(calls) == 1
    assert publisher.published == [("notify.followups", "email.sent")]  # no retry copy
    assert fake.settled == ["ack"]


async def test_held_past_the_limit_it_waits_in_a_delay_queue_with_its_attempts_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(holding, "HOLD_LIMIT_S", 0.0)
    publisher, calls = RefusingPublisher(refusals=0), []
    fake = FakeDelivery(rsvp_created().model_dump_json().encode(), headers={"x-attempts": 2})

    await _processor_on(AwayInbox(outages=100), publisher, calls).process(fake)

    assert calls == []
    queue = EMAIL_RSVP_EVENTS
    assert publisher.published == [(queue.retry_exchange, queue.retry_queue(30))]
    assert publisher.headers[0]["x-attempts"] == 2
    assert fake.settled == ["ack"]
