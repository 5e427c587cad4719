"""Web Push over HTTP (RFC 8030): encrypt (RFC 8291), authorize (RFC 8292), send, map the answer.

The payload is encrypted with ``http_ece`` exactly as pywebpush's
``WebPusher.encode`` does it (a fresh ECDH key and salt per push,
``aes128gcm``), and the VAPID header comes from :mod:`push_consumer.vapid`
(py_vapid signs). pywebpush itself is not used: it sends with ``requests``
(blocking) or ``aiohttp``, and we want one pooled httpx transport that a
test can replace.

What the push service answers becomes one of the runtime's errors here, at
the edge, so handlers never see httpx:

    201/202 (any 2xx)     delivered: ``send`` returns the status
    404/410               SubscriptionGone (permanent for that subscription)
    429, 5xx              TransientError, with the service's Retry-After
    timeouts, I/O errors  TransientError
    400/413, other 4xx    PermanentError (retrying sends the same bad request)
    not a public address  ForbiddenEndpoint, a SubscriptionGone (prod only, see below)

Outbound safety. Each push has one total deadline (``timeout_s``) around
the whole exchange, connect to last body byte: httpx's timeouts are per
read, so a server trickling a byte a second would hold a push for as long
as it liked. Only the first ``MAX_ANSWER_BYTES`` of an answer are read;
nothing in it beyond a short error text matters to us. With
``public_only`` (APP_ENV=prod) connections go only to public addresses,
checked after DNS resolution (:mod:`push_consumer.vetted_transport`). An
endpoint refused there is treated as gone: the calendar deletes the
subscription (``push.subscription_expired``), since every later push to it
would be refused the same way, and the other devices of the user still get
theirs.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol
from uuid import UUID

import http_ece
import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from push_consumer.vapid import VapidAuthorizations
from push_consumer.vetted_transport import VettedHTTPTransport
from shared.messaging.errors import PermanentError, TransientError
from shared.outbound_addresses import ForbiddenAddress

Urgency = Literal["very-low", "low", "normal", "high"]

#: Push services must accept 4096 bytes of encrypted payload (RFC 8291 §4);
#: aes128gcm adds an 86-byte header and a 17-byte padding delimiter and tag.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 17

#: The most of a push service's answer body that is read (an error text, at most).
MAX_ANSWER_BYTES = 4096


@dataclass(frozen=True, slots=True)
class PushTarget:
    """One subscription to push to, as the browser gave it (keys in base64url)."""

    subscription_id: UUID
    endpoint: str
    p256dh: str
    auth: str


class SubscriptionGone(PermanentError):
    """The push service no longer knows this subscription (404/410): delete it."""

    reason = "subscription_gone"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ForbiddenEndpoint(SubscriptionGone):
    """The endpoint's host is, or resolves to, an address pushes may not go to (prod).

    Gone rather than failed: no retry could reach it, so the calendar deletes it.
    """

    reason = "forbidden_endpoint"


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What a push service answered: its status, Retry-After and the start of its body."""

    status_code: int
    retry_after: str | None
    excerpt: bytes


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encrypt(plaintext: bytes, target: PushTarget) -> bytes:
    """The aes128gcm body for ``target``: a new sender key and salt every time (RFC 8291 §3)."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise PermanentError(
            f"push payload of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT_BYTES}",
            reason="payload_too_large",
        )
    try:
        body: bytes = http_ece.encrypt(
            plaintext,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            dh=_b64url(target.p256dh),
            auth_secret=_b64url(target.auth),
            version="aes128gcm",
        )
    except (ValueError, http_ece.ECEException) as exc:
        # the calendar validates keys on subscribe; a bad one is bad for good
        raise PermanentError(
            f"cannot encrypt for this subscription: {exc}", reason="bad_keys"
        ) from exc
    return body


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class PushSender(Protocol):
    """The port the push handler sends through; :class:`WebPushSender` is the real one."""

    async def send(
        self,
        target: PushTarget,
        plaintext: bytes,
        *,
        ttl_s: int,
        urgency: Urgency = "normal",
        topic: str | None = None,
    ) -> int:
        """Push ``plaintext`` to ``target``; the 2xx status.

        Raises SubscriptionGone, TransientError or PermanentError, never an
        HTTP library's exception.
        """
        ...


class WebPushSender:
    """Sends encrypted pushes over one pooled httpx transport (HTTP/1.1 keep-alive).

    ``transport`` is for tests (``httpx.MockTransport``); by default httpx
    opens real connections, at most ``max_connections`` at once, and with
    ``public_only`` only to public addresses. ``timeout_s`` is the total
    deadline of one push.

    It posts through the transport, not an ``httpx.AsyncClient``: a push
    needs none of the client's layers (cookies, auth flows, redirects, event
    hooks, default headers), and they cost about as much CPU as encrypting
    the push (issue 13, ``bench.push_consumer_throughput``).
    """

    def __init__(
        self,
        vapid: VapidAuthorizations,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 32,
        public_only: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._vapid = vapid
        self._deadline_s = timeout_s
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        if transport is None:
            transport = (
                VettedHTTPTransport(limits=limits)
                if public_only
                else httpx.AsyncHTTPTransport(limits=limits)
            )
        self._transport = transport

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def send(
        self,
        target: PushTarget,
        plaintext: bytes,
        *,
        ttl_s: int,
        urgency: Urgency = "normal",
        topic: str | None = None,
    ) -> int:
        """Push ``plaintext`` to ``target``; the 2xx status, or one of the errors above.

        ``topic`` (RFC 8030 §5.4, at most 32 base64url characters) lets the
        push service replace a copy of this push it has not delivered yet,
        so a resend after a crash does not show twice.
        """
        try:
            authorization = self._vapid.header_for(target.endpoint)
        except ValueError as exc:  # no http(s) origin to sign for
            raise PermanentError(str(exc), reason="invalid_endpoint") from exc
        headers = {
            "Authorization": authorization,
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(ttl_s),
            "Urgency": urgency,
        }
        if topic is not None:
            headers["Topic"] = topic
        body = encrypt(plaintext, target)
        try:
            async with asyncio.timeout(self._deadline_s):
                answer = await self._post(target.endpoint, body, headers)
        except ForbiddenAddress as exc:
            # reported as 410 Gone: push.subscription_expired's contract says 404 or 410
            raise ForbiddenEndpoint(f"push endpoint refused: {exc}", status_code=410) from exc
        except httpx.UnsupportedProtocol as exc:
            raise PermanentError(f"not a push URL: {exc}", reason="invalid_endpoint") from exc
        except TimeoutError as exc:
            raise TransientError(
                f"push took longer than {self._deadline_s:g}s in all", reason="push_timeout"
            ) from exc
        except httpx.TimeoutException as exc:
            raise TransientError(f"push service timed out: {exc!r}", reason="push_timeout") from exc
        except httpx.HTTPError as exc:
            raise TransientError(
                f"push service unreachable: {exc!r}", reason="push_unreachable"
            ) from exc
        return _outcome(answer)

    async def _post(self, endpoint: str, body: bytes, headers: dict[str, str]) -> PushAnswer:
        """One POST and at most ``MAX_ANSWER_BYTES`` of its answer.

        An answer read to its end lets the connection go back to the pool; a
        longer one is cut, and its connection closed rather than drained.
        """
        request = httpx.Request(
            "POST", endpoint, headers=headers, content=body, extensions={"timeout": self._timeout}
        )
        response = await self._transport.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an async transport's answer
        excerpt = bytearray()
        try:
            async for chunk in stream:  # raw: a mock's answer is already read, a real one not
                excerpt += chunk
                if len(excerpt) >= MAX_ANSWER_BYTES:
                    break
        finally:
            await response.aclose()
        return PushAnswer(
            response.status_code,
            response.headers.get("Retry-After"),
            bytes(excerpt[:MAX_ANSWER_BYTES]),
        )


def _outcome(answer: PushAnswer) -> int:
    status = answer.status_code
    text = answer.excerpt[:200].decode("utf-8", "replace")
    said = f"push service answered {status}: {text}"
    if 200 <= status < 300:
        return status
    if status in (404, 410):
        raise SubscriptionGone(said, status_code=status)
    if status == 429 or status >= 500:
        raise TransientError(
            said,
            reason="push_throttled" if status == 429 else "push_unavailable",
            retry_after=retry_after_seconds(answer.retry_after),
        )
    raise PermanentError(said, reason="push_rejected")
