"""The push consumer sends real Web Push to a real push service, and reports what happened.

Every test runs ``python -m push_consumer``'s runtime against a vhost of its
own, the run's migrated database (subscriptions registered through the API),
and the test push service of ``devtools/pushsink.py``, which verifies the VAPID
JWT and decrypts each push with the subscription's private key.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractChannel

from calendar_service.config import Settings as CalendarSettings
from calendar_service.delivery_reports import build_runtime
from devtools.pushsink import PushSink, SinkSubscription
from push_consumer.config import Settings
from push_consumer.vapid import VapidAuthorizations, generate_private_key
from push_consumer.webpush import PushTarget, WebPushSender
from shared.messaging.errors import PermanentError, TransientError
from shared.messaging.topology import PUSH_RSVP_EVENTS
from shared.schemas import Envelope, NotificationCommand, PushSend, parse_message
from tests.support.amqp import channel_as, get_one, publish_as_calendar
from tests.support.api import PUSH_SUBSCRIPTIONS, browser_subscription, register
from tests.support.messages import rsvp_created
from tests.support.push_consumer import push_settings, running_push_consumer
from tests.support.push_service import running_push_service
from tests.support.runtime import running
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration

FOLLOWUPS = "calendar.followups"


@pytest.fixture
async def push_service() -> AsyncIterator[PushSink]:
    async with running_push_service() as sink:
        yield sink


@pytest.fixture
def settings(fresh_broker: BrokerEnv, database_url: str) -> Settings:
    return push_settings(fresh_broker, database_url)


async def user_with_subscriptions(
    client: httpx.AsyncClient, push_service: PushSink, count: int
) -> tuple[dict[str, Any], list[SinkSubscription]]:
    """A registered user whose "browsers" subscribed ``count`` times at the push service."""
    user = await register(client)
    subscriptions = []
    for _ in range(count):
        subscription = push_service.subscribe()
        response = await client.post(
            PUSH_SUBSCRIPTIONS, json=subscription.as_json(), headers=user["headers"]
        )
        assert response.status_code == 201, response.text
        subscriptions.append(subscription)
    return user, subscriptions


def rsvp_of(user: dict[str, Any]) -> Envelope[Any]:
    message = rsvp_created()
    attendee = message.data.attendee.model_copy(update={"user_id": uuid.UUID(user["id"])})
    data = message.data.model_copy(update={"attendee": attendee})
    return message.model_copy(update={"data": data})


async def followups(broker: BrokerEnv, count: int, timeout: float = 15) -> list[Envelope[Any]]:
    """Take ``count`` follow-ups off ``calendar.followups`` (this test's vhost only)."""
    found: list[Envelope[Any]] = []
    async with channel_as(broker.amqp_url("calendar")) as channel, asyncio.timeout(timeout):
        while len(found) < count:
            message = await get_one(channel, FOLLOWUPS, timeout=timeout)
            if message is not None:
                found.append(parse_message(message.body))
                await message.ack()
    return found


async def assert_no_more(channel: AbstractChannel, queue: str) -> None:
    leftover = await get_one(channel, queue, timeout=0.5)
    assert leftover is None, f"{queue} still holds {leftover.body if leftover else None!r}"


async def test_the_push_arrives_encrypted_and_signed_with_title_body_event_and_url(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, [subscription] = await user_with_subscriptions(client, push_service, 1)
    message = rsvp_of(user)

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, message)
        [push] = await push_service.wait_for(1)
        [sent] = await followups(fresh_broker, 1)

    event = message.data.event
    assert push.subscription_id == subscription.id
    assert push.notification == {
        "title": f"You're going to {event.title}",
        "body": push.notification["body"],
        "event_id": str(event.event_id),
        "url": f"{settings.app_url}/events/{event.event_id}",
        "kind": "confirmation",
    }
    assert event.location in push.notification["body"]
    assert push.claims["aud"] == push_service.origin
    assert push.claims["sub"] == settings.vapid_subject
    assert (push.ttl, push.urgency, push.topic) == (
        settings.push_ttl_s,
        "normal",
        message.message_id.hex,
    )
    assert sent.type == "push.sent"
    assert (sent.data.status, sent.data.delivered, sent.causation_id) == (
        "sent",
        1,
        message.message_id,
    )


async def test_a_user_with_two_subscriptions_gets_two_pushes(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, subscriptions = await user_with_subscriptions(client, push_service, 2)

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, rsvp_of(user))
        pushes = await push_service.wait_for(2)
        [sent] = await followups(fresh_broker, 1)

    assert sorted(p.subscription_id for p in pushes) == sorted(s.id for s in subscriptions)
    assert (sent.data.status, sent.data.delivered) == ("sent", 2)


async def test_a_user_without_subscriptions_is_a_skipped_push_not_an_error(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user = await register(client)

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, rsvp_of(user))
        [sent] = await followups(fresh_broker, 1)

    assert (sent.type, sent.data.status, sent.data.delivered) == ("push.sent", "skipped", 0)
    assert push_service.attempts == []


async def test_a_gone_subscription_is_reported_and_the_calendar_deletes_it(
    client: httpx.AsyncClient,
    push_service: PushSink,
    settings: Settings,
    fresh_broker: BrokerEnv,
    calendar_settings: CalendarSettings,
) -> None:
    user, [kept, gone] = await user_with_subscriptions(client, push_service, 2)
    push_service.answer_next(gone, 410)
    calendar = calendar_settings.model_copy(update={"amqp_url": fresh_broker.amqp_url("calendar")})
    pool = await asyncpg.create_pool(calendar.asyncpg_dsn, min_size=1, max_size=2)
    try:
        recorder = build_runtime(calendar, pool, metrics_port=None)
        async with running_push_consumer(settings), running(recorder):
            await publish_as_calendar(fresh_broker, rsvp_of(user))
            [push] = await push_service.wait_for(1)
            async with asyncio.timeout(10):
                while (
                    len((await client.get(PUSH_SUBSCRIPTIONS, headers=user["headers"])).json()) > 1
                ):
                    await asyncio.sleep(0.05)
    finally:
        await pool.close()

    assert push.subscription_id == kept.id
    [left] = (await client.get(PUSH_SUBSCRIPTIONS, headers=user["headers"])).json()
    assert left["endpoint"] == kept.endpoint


async def test_a_gone_subscription_follow_up_names_it(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, [gone] = await user_with_subscriptions(client, push_service, 1)
    push_service.answer_next(gone, 404)
    [stored] = (await client.get(PUSH_SUBSCRIPTIONS, headers=user["headers"])).json()

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, rsvp_of(user))
        reports = {f.type: f for f in await followups(fresh_broker, 2)}

    expired = reports["push.subscription_expired"].data
    assert (expired.subscription_id, expired.endpoint, expired.status_code) == (
        uuid.UUID(stored["id"]),
        gone.endpoint,
        404,
    )
    assert reports["push.sent"].data.status == "skipped"  # its only subscription is gone


async def test_429_is_retried_no_sooner_than_retry_after(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, [subscription] = await user_with_subscriptions(client, push_service, 1)
    push_service.answer_next(subscription, 429, **{"Retry-After": "2"})

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, rsvp_of(user))
        await push_service.wait_for(1, within_s=20)
        [sent] = await followups(fresh_broker, 1)

    (_, first_status, first_at), (_, second_status, second_at) = push_service.attempts
    assert (first_status, second_status) == (429, 201)
    # the first retry tier is 1 s; Retry-After: 2 moves it to the 5 s tier
    assert second_at - first_at >= 2
    assert sent.data.status == "sent"


async def test_a_retry_after_a_partial_failure_pushes_only_to_the_failed_subscription(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, [healthy, flaky] = await user_with_subscriptions(client, push_service, 2)
    push_service.answer_next(flaky, 503)

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, rsvp_of(user))
        pushes = await push_service.wait_for(2, within_s=15)
        [sent] = await followups(fresh_broker, 1)

    assert sorted(p.subscription_id for p in pushes) == sorted([healthy.id, flaky.id])
    assert [s for s, _, _ in push_service.attempts].count(healthy.id) == 1
    assert [status for s, status, _ in push_service.attempts if s == flaky.id] == [503, 201]
    assert (sent.data.status, sent.data.delivered) == ("sent", 2)


async def test_a_redelivered_message_pushes_nothing_twice(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, [subscription] = await user_with_subscriptions(client, push_service, 1)
    message = rsvp_of(user)

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, message)
        await push_service.wait_for(1)
        await publish_as_calendar(fresh_broker, message)  # the same message_id again
        first, second = await followups(fresh_broker, 2)  # its push.sent, republished

    assert first.message_id == second.message_id
    assert len(push_service.pushes_to(subscription)) == 1
    assert len(push_service.attempts) == 1


async def test_a_400_is_permanent_dead_lettered_and_reported_failed(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, [subscription] = await user_with_subscriptions(client, push_service, 1)
    push_service.answer_next(subscription, 400)
    message = rsvp_of(user)

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, message)
        [failed] = await followups(fresh_broker, 1)
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, PUSH_RSVP_EVENTS.dead_letter_queue, timeout=5)

    assert failed.type == "push.failed"
    assert failed.data.reason == "push_rejected"
    assert dead is not None
    assert dead.message_id == str(message.message_id)
    assert dead.headers["x-fault-reason"] == "push_rejected"
    assert len(push_service.attempts) == 1  # not retried


async def test_a_reminder_command_is_pushed_with_high_urgency(
    client: httpx.AsyncClient, push_service: PushSink, settings: Settings, fresh_broker: BrokerEnv
) -> None:
    user, _ = await user_with_subscriptions(client, push_service, 1)
    rsvp = rsvp_of(user).data
    command = NotificationCommand(
        kind="reminder", recipient=rsvp.attendee, event=rsvp.event, rsvp_id=rsvp.rsvp_id
    )

    async with running_push_consumer(settings):
        await publish_as_calendar(fresh_broker, PushSend.first(command, producer="tests"))
        [push] = await push_service.wait_for(1)

    assert push.urgency == "high"
    assert push.notification["title"] == f"Reminder: {rsvp.event.title}"


# --- outbound safety: a push service that answers slowly or at length (issue 14) ---


@asynccontextmanager
async def misbehaving_push_service(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]],
    *,
    connections: list[int] | None = None,
) -> AsyncIterator[str]:
    """A tiny HTTP server on 127.0.0.1 that reads a request, then ``answer``s as it likes.

    It serves requests on a connection until the client closes it, and
    appends to ``connections`` the number of requests each connection carried.
    """

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                served += 1
                await answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            if connections is not None:
                connections.append(served)
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/push/1"
    finally:
        server.close()


def _browser_target(endpoint: str) -> PushTarget:
    keys = browser_subscription(endpoint)["keys"]
    return PushTarget(uuid.uuid4(), endpoint, keys["p256dh"], keys["auth"])


def _sender(timeout_s: float) -> WebPushSender:
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com")
    return WebPushSender(vapid, timeout_s=timeout_s)


async def test_a_trickling_push_service_is_cut_at_the_total_deadline() -> None:
    async def one_byte_a_second(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(1.0)

    async with misbehaving_push_service(one_byte_a_second) as endpoint:
        sender = _sender(timeout_s=2.0)
        started = asyncio.get_running_loop().time()
        try:
            with pytest.raises(TransientError) as cut:
                await sender.send(_browser_target(endpoint), b"{}", ttl_s=60)
        finally:
            await sender.aclose()
        took = asyncio.get_running_loop().time() - started

    assert cut.value.reason == "push_timeout"
    assert 1.9 <= took < 3.0  # each byte came within httpx's read timeout; the total is 2 s


async def test_a_huge_answer_is_read_only_up_to_the_cap() -> None:
    written: list[int] = []

    async def endless_error_page(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 104857600\r\n\r\n")
        for _ in range(1600):  # 100 MiB, in 64 KiB pieces, while the client reads
            writer.write(b"e" * 65536)
            await writer.drain()
            written.append(65536)

    async with misbehaving_push_service(endless_error_page) as endpoint:
        sender = _sender(timeout_s=10.0)
        try:
            with pytest.raises(PermanentError) as rejected:
                await sender.send(_browser_target(endpoint), b"{}", ttl_s=60)
        finally:
            await sender.aclose()
        await asyncio.sleep(0.2)  # the server notices the closed connection

    assert rejected.value.reason == "push_rejected"
    assert "answered 400: eeee" in str(rejected.value)
    # the client stopped reading after 4 KiB and closed: the server could not push 100 MiB
    assert sum(written) < 16 * 1024 * 1024


async def test_pushes_reuse_a_connection_whose_answer_was_read_to_its_end() -> None:
    connections: list[int] = []

    async def created(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with misbehaving_push_service(created, connections=connections) as endpoint:
        sender = _sender(timeout_s=5.0)
        try:
            target = _browser_target(endpoint)
            statuses = [await sender.send(target, b"{}", ttl_s=60) for _ in range(3)]
        finally:
            await sender.aclose()
        await asyncio.sleep(0.2)  # the server notices the closed connection

    assert statuses == [201, 201, 201]
    assert connections == [3]


async def test_a_connection_whose_answer_was_cut_is_closed_not_reused() -> None:
    connections: list[int] = []

    async def long_error_page(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 16777216\r\n\r\n")
        for _ in range(256):  # 16 MiB in 64 KiB pieces, while the client reads
            writer.write(b"e" * 65536)
            await writer.drain()

    async with misbehaving_push_service(long_error_page, connections=connections) as endpoint:
        sender = _sender(timeout_s=5.0)
        try:
            for _ in range(2):
                with pytest.raises(PermanentError, match="answered 400"):
                    await sender.send(_browser_target(endpoint), b"{}", ttl_s=60)
        finally:
            await sender.aclose()
        await asyncio.sleep(0.2)

    assert connections == [1, 1]
