"""The Web Push adapter: what goes over the wire, and every answer mapped to the runtime's errors.

Pure unit tests on an in-memory poster (``tests.fakes.push.ScriptedPoster``);
the integration tests send over real HTTP to a real push service.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from push_consumer.push_http import PushAnswer
from push_consumer.vapid import VapidAuthorizations, b64url_encode, generate_private_key
from push_consumer.webpush import (
    MAX_PLAINTEXT_BYTES,
    PushTarget,
    SubscriptionGone,
    WebPushSender,
    retry_after_seconds,
)
from shared.messaging.errors import PermanentError, TransientError
from tests.fakes.push import Post, ScriptedPoster

Handler = Callable[[Post], PushAnswer]


class Browser:
    """The receiving side of a subscription: its private key and auth secret."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = secrets.token_bytes(16)
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.target = PushTarget(
            uuid.uuid4(),
            "https://push.example.net/p/1",
            b64url_encode(point),
            b64url_encode(self.auth),
        )

    def decrypt(self, body: bytes) -> bytes:
        plaintext: bytes = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return plaintext


def sender(handler: Handler) -> WebPushSender:
    vapid = VapidAuthorizations(generate_private_key(), "mailto:ops@example.com")
    return WebPushSender(vapid, poster=ScriptedPoster(handler))


def answer(status: int, retry_after: str | None = None) -> Handler:
    return lambda post: PushAnswer(status, retry_after, b"")


async def test_a_push_is_encrypted_for_the_subscription_with_the_rfc_8030_headers() -> None:
    browser, seen = Browser(), []

    def push_service(post: Post) -> PushAnswer:
        seen.append(post)
        return PushAnswer(201, None, b"")

    status = await sender(push_service).send(
        browser.target, b'{"title": "hi"}', ttl_s=60, urgency="high", topic="abc"
    )

    [request] = seen
    assert status == 201
    assert request.endpoint == browser.target.endpoint
    assert browser.decrypt(request.body) == b'{"title": "hi"}'
    assert request.headers["Content-Encoding"] == "aes128gcm"
    assert (request.headers["TTL"], request.headers["Urgency"], request.headers["Topic"]) == (
        "60",
        "high",
        "abc",
    )
    assert request.headers["Authorization"].startswith("vapid t=")


async def test_an_endpoint_no_vapid_token_can_be_signed_for_is_permanent_and_not_posted() -> None:
    browser, seen = Browser(), []
    target = PushTarget(
        browser.target.subscription_id,
        "https://[::1]:8443/push/abc",
        browser.target.p256dh,
        browser.target.auth,
    )

    def push_service(post: Post) -> PushAnswer:
        seen.append(post)
        return PushAnswer(201, None, b"")

    with pytest.raises(PermanentError) as raised:
        await sender(push_service).send(target, b"{}", ttl_s=60)

    assert raised.value.reason == "invalid_endpoint"
    assert seen == []


async def test_every_push_uses_a_fresh_sender_key_and_salt() -> None:
    browser, bodies = Browser(), []

    def push_service(post: Post) -> PushAnswer:
        bodies.append(post.body)
        return PushAnswer(201, None, b"")

    push = sender(push_service)
    for _ in range(2):
        await push.send(browser.target, b"same", ttl_s=60)

    # aes128gcm header: salt (16) | rs (4) | idlen (1) | sender public key (65)
    assert bodies[0][:16] != bodies[1][:16]
    assert bodies[0][21:86] != bodies[1][21:86]


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (404, SubscriptionGone, "subscription_gone"),
        (410, SubscriptionGone, "subscription_gone"),
        (429, TransientError, "push_throttled"),
        (500, TransientError, "push_unavailable"),
        (503, TransientError, "push_unavailable"),
        (400, PermanentError, "push_rejected"),
        (403, PermanentError, "push_rejected"),
        (413, PermanentError, "push_rejected"),
    ],
)
async def test_each_answer_maps_to_the_runtimes_error(
    status: int, error: type[Exception], reason: str
) -> None:
    push = sender(answer(status))

    with pytest.raises(error) as raised:
        await push.send(Browser().target, b"x", ttl_s=60)

    assert raised.value.reason == reason  # type: ignore[attr-defined]
    if status in (404, 410):
        assert raised.value.status_code == status  # type: ignore[attr-defined]


async def test_a_429_carries_the_services_retry_after() -> None:
    push = sender(answer(429, retry_after="7"))

    with pytest.raises(TransientError) as raised:
        await push.send(Browser().target, b"x", ttl_s=60)

    assert raised.value.retry_after == 7


@pytest.mark.parametrize(
    ("library_error", "expected", "reason"),
    [
        (aiohttp.ClientConnectionError("refused"), TransientError, "push_unreachable"),
        (aiohttp.ClientOSError(104, "reset"), TransientError, "push_unreachable"),
        (aiohttp.ServerDisconnectedError(), TransientError, "push_unreachable"),
        (aiohttp.ClientPayloadError("bad chunk"), TransientError, "push_unreachable"),
        (aiohttp.ClientError("bad answer"), TransientError, "push_unreachable"),
        (aiohttp.ConnectionTimeoutError("slow"), TransientError, "push_timeout"),
        (aiohttp.SocketTimeoutError("slow"), TransientError, "push_timeout"),
        (aiohttp.ServerTimeoutError("slow"), TransientError, "push_timeout"),
        (aiohttp.InvalidUrlClientError("http://127.1/"), PermanentError, "invalid_endpoint"),
        (aiohttp.NonHttpUrlClientError("ftp://x/"), PermanentError, "invalid_endpoint"),
    ],
)
async def test_every_http_client_error_is_mapped_at_the_edge(
    library_error: Exception, expected: type[Exception], reason: str
) -> None:
    def push_service(post: Post) -> PushAnswer:
        raise library_error

    with pytest.raises(expected) as raised:
        await sender(push_service).send(Browser().target, b"x", ttl_s=60)

    assert raised.value.reason == reason  # type: ignore[attr-defined]
    assert raised.value.__cause__ is library_error


async def test_a_payload_over_the_4k_limit_is_refused_before_sending() -> None:
    push = sender(lambda post: pytest.fail("nothing may be sent"))

    with pytest.raises(PermanentError, match="exceeds"):
        await push.send(Browser().target, b"x" * (MAX_PLAINTEXT_BYTES + 1), ttl_s=60)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    assert retry_after_seconds("120") == 120
    assert (
        retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now)
        == 30
    )
    assert (
        retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0
    )
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


async def test_an_endpoint_without_an_origin_is_permanent_and_sends_nothing() -> None:
    push = sender(lambda post: pytest.fail("nothing may be sent"))
    target = Browser().target
    bad = PushTarget(
        target.subscription_id, "mailto:someone@example.com", target.p256dh, target.auth
    )

    with pytest.raises(PermanentError) as raised:
        await push.send(bad, b"x", ttl_s=60)

    assert raised.value.reason == "invalid_endpoint"
