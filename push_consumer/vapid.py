"""VAPID (RFC 8292): the application server's key pair and the JWT push services check.

Signing a token is the costly part of a push (an ECDSA signature), and a push
service takes the same token for every push until it expires, so
:class:`VapidAuthorizations` signs one per audience (a push service's
origin) and reuses it until shortly before it expires. py_vapid signs.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException

#: How long a token is valid; RFC 8292 §2 allows at most 24 hours.
TOKEN_LIFETIME_S = 12 * 3600
#: A cached token is renewed this long before it expires (clocks differ).
RENEW_BEFORE_S = 3600

_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://[^/\s]+(/\S*)?)$")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding, as Web Push writes keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; standard base64 is accepted too."""
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    try:
        return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64url: {text[:20]!r}") from exc


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The raw 32-byte private value in base64url: what VAPID_PRIVATE_KEY holds."""
    return b64url_encode(key.private_numbers().private_value.to_bytes(32, "big"))


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The uncompressed public point in base64url: the browsers' ``applicationServerKey``."""
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(point)


def load_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from base64url raw (32 bytes), base64url DER, or PEM."""
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        elif len(raw := b64url_decode(text)) == 32:
            key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
        else:
            key = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "VAPID_PRIVATE_KEY is not a private key (base64url raw, DER or PEM)"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("VAPID_PRIVATE_KEY must be an EC P-256 key")
    return key


def check_subject(subject: str) -> None:
    """Refuse a ``sub`` claim that is not a ``mailto:`` or ``https:`` contact."""
    if not _SUBJECT.match(subject):
        raise ValueError(f"VAPID_SUBJECT must be a mailto: or https: URL, not {subject!r}")


def audience_of(endpoint: str) -> str:
    """The ``aud`` claim for a push endpoint: its origin (scheme, host, port if any)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) push endpoint: {endpoint[:100]!r}")
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@dataclass(frozen=True, slots=True)
class _Token:
    header: str
    expires_at: int


class VapidAuthorizations:
    """``Authorization: vapid t=<JWT>, k=<public key>`` headers, cached per audience."""

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey,
        subject: str,
        *,
        lifetime_s: int = TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_subject(subject)
        if not RENEW_BEFORE_S < lifetime_s <= 24 * 3600:
            raise ValueError("a VAPID token lives more than an hour and at most 24 hours")
        # no-strict: the subject was checked above; py_vapid's own check refuses
        # hosts without a dot (mailto:ops@localhost)
        self._vapid = Vapid02(private_key, conf={"no-strict": True})
        self._subject = subject
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self.public_key = public_key_text(private_key)

    def header_for(self, endpoint: str) -> str:
        """The Authorization header for a push to ``endpoint``; ValueError if it has no origin."""
        audience = audience_of(endpoint)
        now = self._clock()
        token = self._tokens.get(audience)
        if token is None or token.expires_at - RENEW_BEFORE_S <= now:
            token = self._sign(audience, now)
        return token.header

    def _sign(self, audience: str, now: float) -> _Token:
        expires_at = int(now) + self._lifetime_s
        claims = {"aud": audience, "sub": self._subject, "exp": expires_at}
        try:
            header: str = self._vapid.sign(claims)["Authorization"]
        except VapidException as exc:  # py_vapid signs for no IPv6-literal origin
            raise ValueError(f"cannot sign a VAPID token for {audience!r}: {exc}") from exc
        # forget the expired ones, so endpoints seen once do not pile up
        self._tokens = {a: t for a, t in self._tokens.items() if t.expires_at > now}
        token = self._tokens[audience] = _Token(header, expires_at)
        return token
