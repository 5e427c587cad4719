"""Password hashing (argon2id) and access tokens (JWT, HS256)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from calendar_service.errors import Overloaded

_hasher = PasswordHasher()
#: Verified against when the user does not exist, so timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


# argon2 costs tens of milliseconds of CPU by design. Run on the event loop it
# would stall every other request; argon2-cffi releases the GIL, so a worker
# thread keeps the API responsive during a burst of logins.


class PasswordHashing:
    """argon2id hashes in worker threads, at most ``slots`` at once.

    Each hash holds 64 MiB while it runs, so a login flood with unbounded
    threads would exhaust memory. A hash that finds no slot free within
    ``wait_s`` is refused with ``Overloaded`` (503, Retry-After) instead of
    queueing without end.
    """

    def __init__(self, slots: int, *, wait_s: float = 1.0) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._wait_s = wait_s

    async def hash(self, password: str) -> str:
        async with self._slot():
            return await asyncio.to_thread(_hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` is this hash's; a missing hash costs the same time."""
        async with self._slot():
            return await asyncio.to_thread(_verify, password_hash, password)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self._slots.acquire(), self._wait_s)
        except TimeoutError:
            raise Overloaded("password_hash") from None
        try:
            yield
        finally:
            self._slots.release()


class InvalidToken(Exception):
    """Expired, forged, or malformed."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    role: str


#: Verified tokens remembered per process; the oldest is forgotten first.
VERIFIED_TOKENS_KEPT = 10_000


@dataclass(frozen=True)
class TokenIssuer:
    """Issues and verifies access tokens; a verified token is remembered until it expires.

    Decoding and checking an HS256 token costs ~50 µs of CPU, about a tenth
    of the RSVP route's whole budget, and a client sends the same token with
    every request. Only tokens that passed verification are remembered, keyed
    by the whole token, so a forged one is still checked (and refused) each time.
    """

    secret: str
    ttl: timedelta
    algorithm: str = "HS256"
    audience: str = "rsvp-calendar"
    _verified: dict[str, tuple[TokenClaims, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def issue(self, user_id: uuid.UUID, role: str) -> str:
        now = datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "role": role,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
        }
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def verify(self, token: str) -> TokenClaims:
        remembered = self._verified.get(token)
        if remembered is not None and remembered[1] > time.time():
            return remembered[0]
        claims, expires_at = self._decode(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (claims, expires_at)
        return claims

    def _decode(self, token: str) -> tuple[TokenClaims, float]:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                options={"require": ["sub", "exp", "aud"]},
            )
            user = TokenClaims(user_id=uuid.UUID(claims["sub"]), role=str(claims.get("role")))
            return user, float(claims["exp"])
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise InvalidToken(str(exc)) from exc
