"""Rate limits kept in Redis, shared by every API replica (moving windows, ``limits``).

A limit is a string such as ``"3/hour"``; ``Limiter.hit`` counts one use of
a key and says how long to wait when the window is full. If Redis is down
the limiter refuses (fails closed): a limit that vanishes with its store
would let exactly the bursts through that it exists to stop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, status
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool


class LimiterUnavailable(Exception):
    """Redis could not be asked; the caller should answer 503."""


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
            raise LimiterUnavailable(str(exc)) from exc
        return Refused(retry_after_s=max(1, math.ceil(stats.reset_time - time.time())))


async def enforce(limiter: Limiter, limit: RateLimitItem, *key: str, what: str, shown: str) -> None:
    """Count one use of ``key``; raise the HTTP answer when refused.

    429 with Retry-After past the limit (``shown`` as configured, "3/hour"),
    503 when Redis cannot be asked.
    """
    try:
        refused = await limiter.hit(limit, *key)
    except LimiterUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="rate limiter unavailable, try again"
        ) from exc
    if refused is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{what} too often (limit {shown})",
            headers={"Retry-After": str(refused.retry_after_s)},
        )
