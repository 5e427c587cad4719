"""Inbox claims and records of every message in flight, as group commits.

Each message handled costs the inbox a claim (lock, then look), a record
(an INSERT that must be durable before the ack) and a release of the lock.
Done one by one, that is three round trips, a WAL flush and a connection
reset per message. Here every claim, record and release asked for while the
previous batch was on the wire goes out together: one INSERT for all
records (one WAL flush) and, at the same time on a second connection, one
call of ``consumer_inbox_claim_many`` that releases and claims. Under load a
round trip serves a dozen messages.

Messages that come one at a time (30 RSVPs a second is one every 33 ms)
would each pay every round trip alone, and so would their follow-ups, acks
and the broker's work on them. So a claim that finds the session idle waits
up to ``gather_s`` for others (``INBOX_GATHER_MS``): the messages then run
side by side and share their claims, their records, their follow-ups'
confirms and their acks. Only that first claim waits; a record never does,
and claims asked for while a batch is on the wire go with the next at once.
With ``gather_s`` 0 a message alone waits for nothing but its own round trip.

The locks are session-level advisory locks, so they live on one connection
held from the pool while any claim is open, and given back (reset, which
drops nothing then) once none is; the records' connection is held as long. A
crashed process's session ends and its locks with it. Session locks stack
within a session, so this process keeps its own set of held keys: a second
copy here finds the key held without asking PostgreSQL.

A release waits for the next claim to go with it (:data:`RELEASE_DELAY_S`).
Ordering is what keeps the 0006 race away: a record commits before the
release of its lock is sent (a claim is released only after its record
returned, so never in the batch that records it), and in the claim
function the releases run before the claims, whose look-up takes a
snapshot after its locks are held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg

log = logging.getLogger(__name__)

#: (consumer, message id): what a claim holds.
Key = tuple[str, UUID]
if TYPE_CHECKING:  # generic only in the stubs
    Connection = asyncpg.pool.PoolConnectionProxy[asyncpg.Record]

_CLAIM_MANY = (
    "SELECT locked, handled, stored FROM"
    " consumer_inbox_claim_many($1::text[], $2::uuid[], $3::text[], $4::uuid[])"
)
RECORD_MANY = (
    "INSERT INTO consumer_inbox (consumer, message_id, followups)"
    " SELECT r.c, r.m, r.f::jsonb FROM unnest($1::text[], $2::uuid[], $3::text[]) AS r(c, m, f)"
    " ON CONFLICT DO NOTHING"
)


#: How long a release may wait for a claim to ride along with. Under load one
#: always comes at once; a message on its own then costs two round trips
#: (claim, record) instead of three. A lock held a little longer only sends
#: a copy arriving meanwhile to the retry tier, as any busy claim.
RELEASE_DELAY_S = 0.2


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """What PostgreSQL answered for one claim."""

    locked: bool  #: this session now holds the message's lock
    handled: bool  #: the message is recorded as handled
    stored: str | None  #: its recorded follow-ups (a JSON array), if any
    session: int  #: the session the lock lives on; a release on another is void


@dataclass
class _Pending:
    claims: list[tuple[Key, asyncio.Future[ClaimResult]]] = field(default_factory=list)
    records: list[tuple[Key, str, asyncio.Future[None]]] = field(default_factory=list)
    releases: list[Key] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.claims or self.records or self.releases)


class InboxSession:
    """Batches inbox claims, records and releases onto one pooled connection."""

    def __init__(self, pool: asyncpg.Pool, *, gather_s: float = 0.0, gather_max: int = 16) -> None:
        """``gather_s``: how long claims finding the session idle wait for company;
        ``gather_max``: claims that end the wait at once (the handlers that can
        run at once: no more claims can come)."""
        if gather_s < 0 or gather_max < 1:
            raise ValueError("gather_s must be >= 0 and gather_max >= 1")
        self._pool = pool
        self._gather_s = gather_s
        self._gather_max = gather_max
        #: Round trips that claimed (with or without releases): for tests and benchmarks.
        self.claim_batches = 0
        self._pending = _Pending()
        self._locks = 0  # locks held on the current session, released or not yet
        self._session = 0  # bumped whenever a connection is lost with its locks
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def claim(self, key: Key) -> ClaimResult:
        future: asyncio.Future[ClaimResult] = asyncio.get_running_loop().create_future()
        self._pending.claims.append((key, future))
        self._kick()
        return await future

    async def record(self, key: Key, followups: str) -> None:
        """Return once the record is committed (in a group commit with its neighbours)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.records.append((key, followups, future))
        self._kick()
        await future

    def release(self, key: Key, result: ClaimResult) -> None:
        """Let go of a lock ``claim`` took, with the next claims or after a short delay."""
        if result.locked and result.session == self._session:
            first = not self._pending.releases
            self._pending.releases.append(key)
            if first:  # starts the delay; later ones ride along
                self._kick()

    def _kick(self) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        self._wake.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._serve(), name="inbox-session")

    async def _serve(self) -> None:
        locks, records = _PooledConnection(self._pool), _PooledConnection(self._pool)
        try:
            woken = True  # the first claims of a new worker find it idle too
            while self._pending or self._locks:
                nothing_urgent = not (self._pending.claims or self._pending.records)
                if nothing_urgent:
                    if await self._idle():
                        woken = True
                        continue
                elif woken and self._gather_s > 0:
                    await self._gather()
                woken = False
                batch, self._pending = self._pending, _Pending()
                # independent: a release in this batch had its record committed earlier
                await asyncio.gather(self._record(records, batch), self._claim(locks, batch))
            self._worker = None  # no await since the check: new work starts a new worker
        finally:
            await locks.give_back()
            await records.give_back()

    async def _gather(self) -> None:
        """Let claims that found the session idle wait for company (``gather_s``).

        Only claims wait, and only for the first batch after the session was
        idle: a record is never held (its ack waits on it), and claims that
        came while a batch was on the wire go with the next one at once.
        """
        assert self._wake is not None
        pending = self._pending
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._gather_s
        while not pending.records and len(pending.claims) < self._gather_max:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _idle(self) -> bool:
        """Wait for claims or records; False when only releases are due now."""
        assert self._wake is not None
        self._wake.clear()
        if not self._pending.releases:
            await self._wake.wait()
            return True
        try:
            await asyncio.wait_for(self._wake.wait(), RELEASE_DELAY_S)
        except TimeoutError:
            return False
        return True

    async def _record(self, records: _PooledConnection, batch: _Pending) -> None:
        if not batch.records:
            return
        consumers = [key[0] for key, _, _ in batch.records]
        ids = [key[1] for key, _, _ in batch.records]
        bodies = [body for _, body, _ in batch.records]
        try:
            await (await records.get()).execute(RECORD_MANY, consumers, ids, bodies)
        except Exception as exc:
            log.warning("inbox records failed: %r", exc)
            _fail([done for *_, done in batch.records], exc)
            await records.discard()
            return
        for *_, done in batch.records:
            if not done.done():
                done.set_result(None)

    async def _claim(self, locks: _PooledConnection, batch: _Pending) -> None:
        if not (batch.claims or batch.releases):
            return
        released = [key[0] for key in batch.releases], [key[1] for key in batch.releases]
        wanted = [key[0] for key, _ in batch.claims], [key[1] for key, _ in batch.claims]
        try:
            self.claim_batches += bool(batch.claims)
            rows = await (await locks.get()).fetch(_CLAIM_MANY, *released, *wanted)
        except Exception as exc:
            log.warning("inbox claims failed: %r", exc)
            _fail([claimed for _, claimed in batch.claims], exc)
            # the session's locks die with it; claims still open are void
            await locks.discard()
            self._session += 1
            self._locks = 0
            return
        self._locks -= len(batch.releases)
        for row, (key, claimed) in zip(rows, batch.claims, strict=True):
            self._locks += bool(row["locked"])
            result = ClaimResult(row["locked"], row["handled"], row["stored"], self._session)
            if claimed.done():  # its waiter was cancelled: let go at once
                self.release(key, result)
            else:
                claimed.set_result(result)


class _PooledConnection:
    """A connection taken from the pool when first needed and kept until given back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._connection: Connection | None = None

    async def get(self) -> Connection:
        if self._connection is None:
            self._connection = await self._pool.acquire()
        return self._connection

    async def discard(self) -> None:
        """Drop a connection in an unknown state (a failed statement, a lost server)."""
        if self._connection is not None:
            try:
                self._connection.terminate()
            except asyncpg.InterfaceError:  # the pool took it back already (it is closing)
                self._connection = None
                return
            await self.give_back()

    async def give_back(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await self._pool.release(connection)
        except Exception as exc:  # a broken connection the pool replaces anyway
            log.warning("could not give an inbox connection back: %r", exc)


def _fail(futures: list[asyncio.Future[Any]], exc: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(exc)
