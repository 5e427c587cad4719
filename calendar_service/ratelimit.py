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
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

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
