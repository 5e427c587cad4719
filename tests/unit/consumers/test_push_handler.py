"""The push handler: what it pushes, what it reports, and what it raises, on fakes.

``RecordingPushSender`` stands in for the push services and
``MemorySubscriptionStore`` for PostgreSQL; the integration tests run the
same behaviours against a real push service and database.
"""

from __future__ import annotations

import orjson
import pytest

from push_consumer.handler import PushHandlers, PushRejected, push_failed
from push_consumer.webpush import SubscriptionGone
from shared.messaging.errors import PermanentError, TransientError
from shared.schemas import NotificationCommand, PushSend, RsvpCreated
from tests.fakes.push import MemorySubscriptionStore
from tests.fakes.senders import RecordingPushSender
from tests.support.messages import rsvp_created

APP_URL = "https://calendar.example.org"
TTL_S = 3600


@pytest.fixture
def store() -> MemorySubscriptionStore:
    return MemorySubscriptionStore()


@pytest.fixture
def sender() -> RecordingPushSender:
    return RecordingPushSender()


@pytest.fixture
def handlers(store: MemorySubscriptionStore, sender: RecordingPushSender) -> PushHandlers:
    return PushHandlers(store, sender, app_url=APP_URL, ttl_s=TTL_S)


def gone(status: int = 410) -> SubscriptionGone:
    return SubscriptionGone(f"push service answered {status}", status_code=status)


async def test_each_subscription_gets_the_notification_and_the_message_reports_sent(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    message = rsvp_created()
    phone, laptop = store.give(message.data.attendee.user_id, 2)

    [sent] = await handlers.on_rsvp_event(message)

    assert [push.target for push in sender.sent] == [phone, laptop]
    event = message.data.event
    for push in sender.sent:
        assert (push.ttl_s, push.urgency, push.topic) == (TTL_S, "normal", message.message_id.hex)
        notification = orjson.loads(push.plaintext)
        assert notification["title"] == f"You're going to {event.title}"
        assert notification["url"] == f"{APP_URL}/events/{event.event_id}"
    assert sent.type == "push.sent"
    assert (sent.data.status, sent.data.delivered) == ("sent", 2)
    assert sent.causation_id == message.message_id
    assert store.ledger == set()  # the inbox record is enough when every push went out


async def test_a_reminder_command_wakes_the_device_with_high_urgency(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    rsvp = rsvp_created()
    command = PushSend.first(
        NotificationCommand(
            kind="reminder", recipient=rsvp.data.attendee, event=rsvp.data.event, status="going"
        ),
        producer="tests",
    )
    store.give(rsvp.data.attendee.user_id, 1)

    [sent] = await handlers.on_command(command)

    [push] = sender.sent
    assert push.urgency == "high"
    assert orjson.loads(push.plaintext)["title"] == f"Reminder: {rsvp.data.event.title}"
    assert (sent.data.status, sent.data.delivered) == ("sent", 1)


async def test_a_user_without_subscriptions_is_skipped_not_an_error(
    handlers: PushHandlers, sender: RecordingPushSender
) -> None:
    [sent] = await handlers.on_rsvp_event(rsvp_created())

    assert sender.sent == []
    assert (sent.type, sent.data.status, sent.data.delivered) == ("push.sent", "skipped", 0)


async def test_a_gone_subscription_is_reported_expired_beside_the_delivered_one(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    message = rsvp_created()
    old_phone, laptop = store.give(message.data.attendee.user_id, 2)
    sender.fail_next(gone(404))

    sent, expired = await handlers.on_rsvp_event(message)

    assert [push.target for push in sender.sent] == [laptop]
    assert (sent.data.status, sent.data.delivered) == ("sent", 1)
    assert expired.type == "push.subscription_expired"
    assert (expired.data.subscription_id, expired.data.endpoint, expired.data.status_code) == (
        old_phone.subscription_id,
        old_phone.endpoint,
        404,
    )
    assert expired.data.user_id == message.data.attendee.user_id


async def test_when_every_subscription_is_gone_the_push_is_skipped(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    message = rsvp_created()
    store.give(message.data.attendee.user_id, 1)
    sender.fail_next(gone(410))

    sent, expired = await handlers.on_rsvp_event(message)

    assert (sent.data.status, sent.data.delivered) == ("skipped", 0)
    assert expired.data.status_code == 410


async def test_a_transient_failure_retries_only_the_devices_that_did_not_get_it(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    message = rsvp_created()
    phone, laptop = store.give(message.data.attendee.user_id, 2)
    sender.fail_next(TransientError("503", reason="push_unavailable", retry_after=30))

    with pytest.raises(TransientError) as raised:
        await handlers.on_rsvp_event(message)
    assert raised.value.retry_after == 30
    assert raised.value.reason == "push_unavailable"
    assert store.ledger == {(message.message_id, laptop.subscription_id)}

    [sent] = await handlers.on_rsvp_event(message)  # the runtime's retry

    assert [push.target for push in sender.sent] == [laptop, phone]
    assert (sent.data.status, sent.data.delivered) == ("sent", 2)


async def test_the_longest_retry_after_asked_for_is_the_one_honoured(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    message = rsvp_created()
    store.give(message.data.attendee.user_id, 2)
    sender.fail_next(TransientError("429", reason="push_throttled", retry_after=5))
    sender.fail_next(TransientError("429", reason="push_throttled", retry_after=120))

    with pytest.raises(TransientError) as raised:
        await handlers.on_rsvp_event(message)

    assert raised.value.retry_after == 120
    assert store.ledger == set()


async def test_a_push_every_service_refuses_is_dead_lettered_with_its_expired_follow_ups(
    handlers: PushHandlers, store: MemorySubscriptionStore, sender: RecordingPushSender
) -> None:
    message: RsvpCreated = rsvp_created()
    old_phone, _ = store.give(message.data.attendee.user_id, 2)
    sender.fail_next(gone(410))
    sender.fail_next(PermanentError("push service answered 400", reason="push_rejected"))

    with pytest.raises(PushRejected) as raised:
        await handlers.on_rsvp_event(message)

    failed, expired = push_failed(message, raised.value)
    assert failed.type == "push.failed"
    assert failed.causation_id == message.message_id
    assert expired.type == "push.subscription_expired"
    assert expired.data.subscription_id == old_phone.subscription_id
