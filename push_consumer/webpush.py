"""Web Push over HTTP (RFC 8030): encrypt (RFC 8291), authorize (RFC 8292), send, map the answer.

The payload is encrypted with ``http_ece`` exactly as pywebpush's
``WebPusher.encode`` does it (a fresh ECDH key and salt per push,
``aes128gcm``), and the VAPID header comes from :mod:`push_consumer.vapid`
(py_vapid signs). The POST goes through a :class:`~push_consumer.push_http.Poster`:
by default one pooled aiohttp session (:mod:`push_consumer.push_http`, which
says why aiohttp); a test passes its own.

What the push service answers becomes one of the runtime's errors here, at
the edge, so handlers never see aiohttp:

    201/202 (any 2xx)     delivered: ``send`` returns the status
    404/410               SubscriptionGone (permanent for that subscription)
    429, 5xx              TransientError, with the service's Retry-After
    timeouts, I/O errors  TransientError
    400/413, other 4xx    PermanentError (retrying sends the same bad request)
    not a public address  ForbiddenEndpoint, a SubscriptionGone (prod only, see below)

Outbound safety. Each push has one total deadline (``timeout_s``) around
the whole exchange, connect to last body byte: a per-read timeout would let
a server trickling a byte a second hold a push for as long as it liked.
Only the first 4 KiB of an answer are read; nothing in it beyond a short
error text matters to us. With ``public_only`` (APP_ENV=prod) connections
go only to public addresses, checked after DNS resolution. Both are
:mod:`push_consumer.push_http`'s. An endpoint refused there is
treated as gone: the calendar deletes the subscription
(``push.subscription_expired``), since every later push to it would be
refused the same way, and the other devices of the user still get theirs.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol
from uuid import UUID

import aiohttp
import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from push_consumer.push_http import PooledPoster, Poster, PushAnswer
from push_consumer.vapid import VapidAuthorizations
from shared.messaging.errors import PermanentError, TransientError
from shared.outbound_addresses import ForbiddenAddress

Urgency = Literal["very-low", "low", "normal", "high"]

#: Push services must accept 4096 bytes of encrypted payload (RFC 8291 §4);
#: aes128gcm adds an 86-byte header and a 17-byte padding delimiter and tag.
MAX_PLAINTEXT_BYTES = 4096 - 86 - 17


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
    """Sends encrypted pushes through one :class:`~push_consumer.push_http.Poster`.

    By default that is a :class:`~push_consumer.push_http.PooledPoster`:
    HTTP/1.1 keep-alive connections, at most ``max_connections`` at once,
    and with ``public_only`` only to public addresses; build the sender
    inside the event loop that uses it. ``poster`` is for tests.
    ``timeout_s`` is the total deadline of one push.
    """

    def __init__(
        self,
        vapid: VapidAuthorizations,
        *,
        timeout_s: float = 10.0,
        max_connections: int = 32,
        public_only: bool = False,
        poster: Poster | None = None,
    ) -> None:
        self._vapid = vapid
        self._deadline_s = timeout_s
        self._poster = poster or PooledPoster(
            max_connections=max_connections, public_only=public_only
        )

    async def aclose(self) -> None:
        await self._poster.aclose()

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
                answer = await self._poster.post(target.endpoint, body, headers)
        except ForbiddenAddress as exc:
            # reported as 410 Gone: push.subscription_expired's contract says 404 or 410
            raise ForbiddenEndpoint(f"push endpoint refused: {exc}", status_code=410) from exc
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise PermanentError(f"not a push URL: {exc}", reason="invalid_endpoint") from exc
        except TimeoutError as exc:  # the deadline (aiohttp's own timeouts are off)
            raise TransientError(
                f"push took longer than {self._deadline_s:g}s in all", reason="push_timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransientError(
                f"push service unreachable: {exc!r}", reason="push_unreachable"
            ) from exc
        return _outcome(answer)


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
