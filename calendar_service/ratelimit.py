"""Rate limits kept in Redis, shared by every API replica (moving windows, ``limits``).

A limit is a string such as ``"3/hour"``; ``Limiter.hit`` counts one use of
a key and says how long to wait when the window is full. A ``Quota`` is one
action's limit as a use case takes it: ``take(key)`` raises ``RateLimited``
past it. If Redis is down the limiter refuses (fails closed, with
``LimiterUnavailable``): a limit that vanishes with its store would let
exactly the bursts through that it exists to stop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from calendar_service.errors import LimiterUnavailable, RateLimited


@dataclass(frozen=True)
class Refused:
    retry_after_s: int


def parse_limit(value: str) -> RateLimitItem:
    """``"3/hour"`` -> a limit; ValueError with the accepted forms otherwise."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a rate limit such as '3/hour' or '10/minute'") from exc


class Limiter:
    def __init__(
        self,
        redis_url: str,
        *,
        connection_pool: ConnectionPool | None = None,
        key_prefix: str = "rsvp-limits",
    ) -> None:
        """``connection_pool``: share a client's pool (the API's) instead of opening another."""
        # passed through to the redis client; the stubs type options as scalars only
        shared: dict[str, Any] = {"connection_pool": connection_pool} if connection_pool else {}
        self._storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,
            **shared,
        )
        self._windows = MovingWindowRateLimiter(self._storage)

    async def hit(self, limit: RateLimitItem, *key: str) -> Refused | None:
        """Count one use of ``key``; ``Refused`` (with Retry-After) when over ``limit``."""
        try:
            if await self._windows.hit(limit, *key):
                return None
            stats = await self._windows.get_window_stats(limit, *key)
        except StorageError as exc:
            raise LimiterUnavailable() from exc
        return Refused(retry_after_s=max(1, math.ceil(stats.reset_time - time.time())))


@dataclass(frozen=True)
class Quota:
    """How often one action may be taken per key, across every API replica.

    ``shown`` is the limit as configured ("3/hour") and ``what`` names the
    action in the refusal ("confirmation resent too often (limit 3/hour)").
    """

    limiter: Limiter
    limit: RateLimitItem
    name: str
    what: str
    shown: str

    async def take(self, key: str) -> None:
        """Count one use for ``key``; ``RateLimited`` (with Retry-After) past the limit."""
        refused = await self.limiter.hit(self.limit, self.name, key)
        if refused is not None:
            raise RateLimited(
                f"{self.what} too often (limit {self.shown})",
                retry_after_s=refused.retry_after_s,
            )


# Request admission: the tier limits, the login and registration limits and the
# RSVP change limit are counted here rather than in the moving windows above.
# A request's counters are fixed windows taken together in one Lua script, so
# the RSVP route pays one Redis round trip for its tier and its change limit
# (a moving window costs a script call per limit and a list as long as the
# limit: 600 entries per user for RATE_LIMIT_USER). A fixed window lets at most
# twice a limit through across a window's edge; for these limits that is fine.
_ADMIT = """
local counters = tonumber(ARGV[1])
local marker_ttl = tonumber(ARGV[2])
local replay = marker_ttl > 0 and redis.call('EXISTS', KEYS[counters + 1]) == 1
local refused = 0
for i = 1, counters do
  local limit, ttl, waivable = tonumber(ARGV[3 * i]), ARGV[3 * i + 1], ARGV[3 * i + 2]
  if not (replay and waivable == '1') then
    local used = redis.call('INCR', KEYS[i])
    if used == 1 then redis.call('EXPIRE', KEYS[i], ttl) end
    if used > limit and refused == 0 then refused = i end
  end
end
if marker_ttl > 0 and refused == 0 and not replay then
  redis.call('SET', KEYS[counters + 1], '1', 'EX', marker_ttl)
end
return refused
"""


@dataclass(frozen=True)
class Counter:
    """One use of ``limit`` by ``key`` (a user id, an IP, an email) under ``name``.

    ``waived_on_replay``: not counted again when the request is a replay (its
    idempotency marker is already in Redis), so a client's retry costs nothing.
    """

    limit: RateLimitItem
    name: str
    key: str
    #: what was done too often, for the refusal: "RSVP changed", "signed in"
    what: str
    waived_on_replay: bool = False


@dataclass(frozen=True)
class Refusal:
    counter: Counter
    retry_after_s: int


class Admission:
    """Counts a request's uses of several limits at once, in one Redis round trip."""

    def __init__(self, client: Redis, *, key_prefix: str = "rsvp-admit") -> None:
        self._script = client.register_script(_ADMIT)
        self._prefix = key_prefix

    async def admit(
        self, counters: Sequence[Counter], *, replay_marker: str | None = None
    ) -> Refusal | None:
        """Count one use of each counter; the first one past its limit, or None.

        ``replay_marker`` names the request (user and Idempotency-Key): once an
        admitted request set it, a repeat skips the ``waived_on_replay`` counters.
        ``LimiterUnavailable`` when Redis cannot be asked: the caller decides
        whether that limit fails open or closed.
        """
        now = time.time()
        keys: list[str] = []
        args: list[str | int] = [len(counters), 0]
        window_ends: list[float] = []
        for counter in counters:
            window = counter.limit.get_expiry()
            index = int(now // window)
            keys.append(f"{self._prefix}:{counter.name}:{counter.key}:{index}")
            args += [counter.limit.amount, window + 1, int(counter.waived_on_replay)]
            window_ends.append((index + 1) * window)
        if replay_marker is not None:
            keys.append(f"{self._prefix}:replay:{replay_marker}")
            args[1] = max((c.limit.get_expiry() for c in counters if c.waived_on_replay), default=0)
        try:
            refused = int(await self._script(keys=keys, args=args))
        except (RedisError, OSError) as exc:
            raise LimiterUnavailable() from exc
        if refused == 0:
            return None
        retry_after = max(1, math.ceil(window_ends[refused - 1] - now))
        return Refusal(counters[refused - 1], retry_after)


def refused_as_error(refusal: Refusal) -> RateLimited:
    """The 429 for ``refusal``: what was done too often, and the limit."""
    return RateLimited(
        f"{refusal.counter.what} too often (limit {refusal.counter.limit})",
        retry_after_s=refusal.retry_after_s,
    )


@dataclass(frozen=True)
class RequestLimits:
    """The limits of design §8 and the RSVP change limit, parsed once from the settings."""

    login: RateLimitItem
    register: RateLimitItem
    anonymous: RateLimitItem
    user: RateLimitItem
    admin: RateLimitItem
    rsvp_change: RateLimitItem

    @classmethod
    def parse(
        cls,
        *,
        login: str,
        register: str,
        anonymous: str,
        user: str,
        admin: str,
        rsvp_change: str,
    ) -> RequestLimits:
        return cls(
            login=parse_limit(login),
            register=parse_limit(register),
            anonymous=parse_limit(anonymous),
            user=parse_limit(user),
            admin=parse_limit(admin),
            rsvp_change=parse_limit(rsvp_change),
        )
