"""Cache-aside for hot reads in Redis; losing Redis only costs speed.

Entries are invalidated after every write that changes them, and expire
anyway after a short TTL so a missed invalidation heals itself.
"""

from __future__ import annotations

import logging
import uuid

import redis.asyncio as redis

log = logging.getLogger(__name__)
EVENT_TTL_S = 30


class EventCache:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @staticmethod
    def _key(event_id: uuid.UUID) -> str:
        return f"event:v1:{event_id}"

    async def get(self, event_id: uuid.UUID) -> bytes | None:
        try:
            value = await self._redis.get(self._key(event_id))
        except redis.RedisError as exc:
            log.warning("cache read failed, reading the database: %r", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, event_id: uuid.UUID, body: bytes) -> None:
        try:
            await self._redis.set(self._key(event_id), body, ex=EVENT_TTL_S)
        except redis.RedisError as exc:
            log.warning("cache write failed: %r", exc)

    async def invalidate(self, event_id: uuid.UUID) -> None:
        try:
            await self._redis.delete(self._key(event_id))
        except redis.RedisError as exc:
            log.warning("cache invalidation failed (entry expires in %ss): %r", EVENT_TTL_S, exc)
