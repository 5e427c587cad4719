"""Cache-aside for hot reads in Redis; losing Redis only costs speed.

Entries are invalidated after every write that changes them, and expire
anyway after a short TTL so a missed invalidation heals itself.

Invalidations are sent in batches, the way a database groups commits: while
one ``DEL`` is on its way, the keys of the requests that commit meanwhile
wait together and go in the next one. Each writer still waits until its key
is deleted before it answers, so a client that reads after its 2xx never sees
the counts from before its write; only the cost is shared (one Redis command
per batch instead of one per request, about a sixth of the RSVP route's CPU).

A miss is rebuilt once, not once per reader (:meth:`EventCache.read_through`):
readers in one process share one load, and across replicas a short Redis lock
lets one rebuild while the others watch the key fill. So a hot event's expiry
costs one database read, not one per concurrent request. With Redis away,
every process reads the database, one load per key at a time.

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
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as redis
from prometheus_client import Counter
from redis.exceptions import LockError

log = logging.getLogger(__name__)
EVENT_TTL_S = 30
#: How long a rebuild may hold its key's lock; a replica that dies holding it costs this much.
REBUILD_LOCK_S = 2.0
#: How often a reader waiting on another replica's rebuild looks at the key again.
REBUILD_POLL_S = 0.005

#: Builds an entry from the database; None when there is nothing (not cached).
Loader = Callable[[], Awaitable[bytes | None]]
#: In place of a page: its event was written within EVENT_TTL_S (never a page, which is JSON)
WRITTEN_LATELY = b""
LOOKUPS = Counter(
    "cache_lookups_total", "Cache reads: hit, miss, or error (Redis failed)", ["cache", "result"]
)
_HIT, _MISS, _ERROR = (LOOKUPS.labels("event", result) for result in ("hit", "miss", "error"))


class EventCache:
    def __init__(self, client: redis.Redis, *, mark_writes: bool = False) -> None:
        """``mark_writes``: invalidate by leaving ``WRITTEN_LATELY`` (with a read replica)."""
        self._redis = client
        self._mark_writes = mark_writes
        #: keys waiting for the next ``DEL``, and the future their writers wait on
        self._pending: set[str] = set()
        self._next_batch: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        #: the rebuild in flight per key, joined by every reader that misses meanwhile
        self._rebuilds: dict[str, asyncio.Task[bytes | None]] = {}

    @staticmethod
    def _key(event_id: uuid.UUID) -> str:
        return f"event:v1:{event_id}"

    @staticmethod
    def _lock_key(key: str) -> str:
        return f"{key}:rebuild"

    async def read_through(
        self, event_id: uuid.UUID, load: Loader, *, primary: Loader | None = None
    ) -> tuple[bytes | None, bool]:
        """The entry and whether it was a hit; on a miss, one rebuild serves every reader.

        With ``primary`` (a read replica is set), ``load`` reads the replica and
        ``primary`` the primary: after a write's mark, the primary is read.
        """
        key = self._key(event_id)
        redis_up = True
        try:
            value = await self._redis.get(key)
        except redis.RedisError as exc:
            _ERROR.inc()
            log.warning("cache read failed, reading the database: %r", exc)
            value, redis_up = None, False
        if isinstance(value, bytes) and value != WRITTEN_LATELY:
            _HIT.inc()
            return value, True
        if redis_up:
            _MISS.inc()
        on_replica = primary is not None and value != WRITTEN_LATELY
        if primary is not None and not on_replica:
            load = primary
        rebuild = self._rebuilds.get(key)
        if rebuild is None:
            rebuild = asyncio.create_task(self._rebuild(key, load, redis_up, on_replica))
            self._rebuilds[key] = rebuild
            rebuild.add_done_callback(lambda done: self._forget_rebuild(key, done))
        # shielded: a reader that goes away must not cancel the others' rebuild
        return await asyncio.shield(rebuild), False

    def _forget_rebuild(self, key: str, done: asyncio.Task[bytes | None]) -> None:
        if self._rebuilds.get(key) is done:
            del self._rebuilds[key]

    async def _rebuild(
        self, key: str, load: Loader, redis_up: bool, on_replica: bool
    ) -> bytes | None:
        lock = self._redis.lock(self._lock_key(key), timeout=REBUILD_LOCK_S, blocking=False)
        locked = False
        give_up_at = time.monotonic() + 2 * REBUILD_LOCK_S
        while redis_up and not locked:
            try:
                locked = bool(await lock.acquire())
                if not locked:
                    built = await self._built_elsewhere(key)
                    if built is not None:
                        return built
                    if time.monotonic() > give_up_at:
                        break  # nobody could build it in time: read it ourselves
                    # the holder let go without an entry (or its lock expired): try again
            except redis.RedisError as exc:
                log.warning("cache rebuild lock failed, reading the database: %r", exc)
                redis_up = False
        cached = False
        try:
            body = await load()
            # an invalidation meanwhile forgot this rebuild: its body may predate that write
            if body is not None and redis_up and self._rebuilds.get(key) is asyncio.current_task():
                cached = await self._put(key, body, only_if_empty=on_replica)
            return body
        finally:
            # Once the entry is in, the lock may simply expire (one round trip fewer): the
            # next miss comes after the entry's TTL, or after a write, which deletes both.
            if locked and not cached:
                try:
                    await lock.release()
                except LockError:  # expired, or a write took it away: the next rebuild's now
                    log.debug("cache rebuild lock was gone at release")
                except redis.RedisError as exc:
                    log.warning("cache rebuild lock release failed: %r", exc)

    async def _built_elsewhere(self, key: str) -> bytes | None:
        """The entry another replica is rebuilding, once it lands (None if it does not in time)."""
        deadline = time.monotonic() + REBUILD_LOCK_S
        while time.monotonic() < deadline:
            await asyncio.sleep(REBUILD_POLL_S)
            value = await self._redis.get(key)
            if isinstance(value, bytes) and value != WRITTEN_LATELY:
                return value
            if not await self._redis.exists(self._lock_key(key)):
                break  # the holder found nothing to cache, or gave up
        return None

    async def _put(self, key: str, body: bytes, *, only_if_empty: bool) -> bool:
        """Store a page; one read on the replica only where nothing (no write's mark) is."""
        try:
            await self._redis.set(key, body, ex=EVENT_TTL_S, nx=only_if_empty)
        except redis.RedisError as exc:
            log.warning("cache write failed: %r", exc)
            return False
        return True

    async def invalidate(self, event_id: uuid.UUID) -> None:
        """Return once the entry is deleted (or Redis failed and it expires by itself)."""
        key = self._key(event_id)
        # a rebuild that started before this write must not serve (or cache) later readers,
        # nor hold them back: its lock goes with the entry
        self._rebuilds.pop(key, None)
        self._pending.add(key)
        batch = self._next_batch
        if batch is None:
            batch = self._next_batch = asyncio.get_running_loop().create_future()
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_batches())
        # shielded: a writer that is cancelled must not cancel its batch-mates' wait
        await asyncio.shield(batch)

    async def _forget(self, keys: set[str]) -> None:
        """Entries and their rebuild locks go; with ``mark_writes`` the entries become marks."""
        locks = [self._lock_key(key) for key in keys]
        if not self._mark_writes:
            await self._redis.delete(*keys, *locks)
            return
        async with self._redis.pipeline(transaction=False) as marks:
            for key in keys:
                marks.set(key, WRITTEN_LATELY, ex=EVENT_TTL_S)
            marks.delete(*locks)
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
