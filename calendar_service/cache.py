"""Cache-aside for hot reads in Redis; losing Redis only costs speed.

Entries are invalidated after every write that changes them, and expire
anyway after a short TTL so a missed invalidation heals itself.

Invalidations are sent in batches, the way a database groups commits: while
one ``DEL`` is on its way, the keys of the requests that commit meanwhile
wait together and go in the next one. Each writer still waits until its key
is deleted before it answers, so a client that reads after its 2xx never sees
the counts from before its write; only the cost is shared (one Redis command
per batch instead of one per request, about a sixth of the RSVP route's CPU).

With a read replica (``DATABASE_READ_URL``) a miss is read from the replica,
which may not have replayed the write that just invalidated the entry; put
back in the cache, that old page would outlive the lag by a whole TTL. So
there an invalidation does not delete the entry but leaves ``WRITTEN_LATELY``
in its place for a TTL: the next reader reads the primary and replaces it,
and a page read from the replica is only stored where nothing is
(``SET NX``), never over that mark.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import redis.asyncio as redis
from prometheus_client import Counter

log = logging.getLogger(__name__)
EVENT_TTL_S = 30
LOOKUPS = Counter(
    "cache_lookups_total", "Cache reads: hit, miss, or error (Redis failed)", ["cache", "result"]
)
_HIT, _MISS, _ERROR = (LOOKUPS.labels("event", result) for result in ("hit", "miss", "error"))
#: In place of a page: its event was written within EVENT_TTL_S (never a page, which is JSON)
WRITTEN_LATELY = b""


class EventCache:
    def __init__(self, client: redis.Redis, *, mark_writes: bool = False) -> None:
        """``mark_writes``: invalidate by leaving ``WRITTEN_LATELY`` (with a read replica)."""
        self._redis = client
        self._mark_writes = mark_writes
        #: keys waiting for the next ``DEL``, and the future their writers wait on
        self._pending: set[str] = set()
        self._next_batch: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    @staticmethod
    def _key(event_id: uuid.UUID) -> str:
        return f"event:v1:{event_id}"

    async def get(self, event_id: uuid.UUID) -> bytes | None:
        """The cached page, ``WRITTEN_LATELY``, or None (not cached, or Redis failed)."""
        try:
            value = await self._redis.get(self._key(event_id))
        except redis.RedisError as exc:
            _ERROR.inc()
            log.warning("cache read failed, reading the database: %r", exc)
            return None
        if isinstance(value, bytes):
            _HIT.inc()
            return value
        _MISS.inc()
        return None

    async def put(self, event_id: uuid.UUID, body: bytes, *, read_on_replica: bool = False) -> None:
        """Cache a page; one ``read_on_replica`` only where nothing (no write's mark) is."""
        try:
            await self._redis.set(self._key(event_id), body, ex=EVENT_TTL_S, nx=read_on_replica)
        except redis.RedisError as exc:
            log.warning("cache write failed: %r", exc)

    async def invalidate(self, event_id: uuid.UUID) -> None:
        """Return once the entry is deleted (or Redis failed and it expires by itself)."""
        self._pending.add(self._key(event_id))
        batch = self._next_batch
        if batch is None:
            batch = self._next_batch = asyncio.get_running_loop().create_future()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_batches())
        # shielded: a writer that is cancelled must not cancel its batch-mates' wait
        await asyncio.shield(batch)

    async def _forget(self, keys: set[str]) -> None:
        if not self._mark_writes:
            await self._redis.delete(*keys)
            return
        async with self._redis.pipeline(transaction=False) as marks:
            for key in keys:
                marks.set(key, WRITTEN_LATELY, ex=EVENT_TTL_S)
            await marks.execute()

    async def _send_batches(self) -> None:
        try:
            while self._pending:
                keys, batch = self._pending, self._next_batch
                self._pending, self._next_batch = set(), None
                try:
                    await self._forget(keys)
                except redis.RedisError as exc:
                    log.warning(
                        "cache invalidation failed (entries expire in %ss): %r", EVENT_TTL_S, exc
                    )
                finally:
                    if batch is not None and not batch.done():
                        batch.set_result(None)
        finally:
            self._sender = None
            # cancelled or failed unexpectedly: release the writers waiting on the next batch too
            if self._next_batch is not None and not self._next_batch.done():
                self._next_batch.set_result(None)
            self._next_batch = None
            self._pending.clear()
