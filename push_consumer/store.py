"""The push consumer's database access: the calendar's subscriptions (read) and its device ledger.

It reads ``push_subscriptions`` and never writes it: a subscription a push
service calls gone is reported with ``push.subscription_expired`` and the
calendar service deletes it. It writes only its sent-devices ledger (the
``push_deliveries`` table): which subscriptions a message has already
reached, so a retry of that message skips them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import asyncpg

from push_consumer.webpush import PushTarget
from shared.messaging.errors import NotAttempted
from shared.service.consumer import nothing_to_reset
from shared.service.database import bounded_pool, database_unreachable, until_it_lands

#: The subscriptions of several (user, message) lookups at once, each row tagged
#: with its lookup's position in the arrays (``n``, from 1). Each lookup is a
#: LATERAL probe of the user_id index and the ledger's primary key, whatever the
#: planner believes of the tables' sizes: as a plain join, on tables not yet
#: analyzed, it was planned as scans of both (tens of ms against 0.1 ms).
#: ``OFFSET 0`` keeps PostgreSQL from flattening the probe back into that join.
_SUBSCRIPTIONS = """
SELECT r.n, s.id, s.endpoint, s.p256dh, s.auth, s.already_sent
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS r(user_id, message_id, n)
CROSS JOIN LATERAL (
    SELECT s.id, s.endpoint, s.p256dh, s.auth, s.created_at,
           d.subscription_id IS NOT NULL AS already_sent
    FROM push_subscriptions s
    LEFT JOIN push_deliveries d
           ON d.consumer = $3 AND d.message_id = r.message_id AND d.subscription_id = s.id
    WHERE s.user_id = r.user_id
    OFFSET 0
) s
ORDER BY r.n, s.created_at, s.id
"""
_RECORD = """
INSERT INTO push_deliveries (consumer, message_id, subscription_id)
SELECT $1, $2, unnest($3::uuid[])
ON CONFLICT DO NOTHING
"""

#: Connections for the store's statements, besides the inbox's one per message in flight.
STORE_CONNECTIONS = 4


@asynccontextmanager
async def store_pool(
    dsn: str,
    *,
    acquire_timeout_s: float,
    server_settings: dict[str, str] | None = None,
    connect_timeout_s: float = 10.0,
) -> AsyncIterator[asyncpg.Pool]:
    """A small pool for the store, whose connections go back without asyncpg's reset.

    asyncpg resets a connection on every release (advisory locks, cursors,
    LISTEN, session settings: one more round trip to PostgreSQL). The store
    runs single statements that leave none of those behind, so here the reset
    would be pure cost on every message. The inbox's pool keeps its reset:
    that is how its claims' advisory locks are let go.
    """
    pool = await bounded_pool(
        dsn,
        acquire_timeout_s=acquire_timeout_s,
        min_size=1,
        max_size=STORE_CONNECTIONS,
        reset=nothing_to_reset,
        server_settings=server_settings,
        timeout=connect_timeout_s,
    )
    try:
        yield pool
    finally:
        await pool.close()


@dataclass(frozen=True, slots=True)
class UserDevice:
    """One of a user's push subscriptions, as seen for one message."""

    target: PushTarget
    #: this message already reached it, in an earlier attempt (the device ledger says so)
    already_sent: bool


class SubscriptionStore(Protocol):
    """The port the push handler reads subscriptions and writes the ledger through.

    :class:`PostgresSubscriptionStore` is the real one; unit tests use
    ``tests.fakes.push.MemorySubscriptionStore``.
    """

    async def devices_for(self, user_id: UUID, message_id: UUID) -> list[UserDevice]:
        """The user's subscriptions, each marked if ``message_id`` already reached it."""
        ...

    async def record_sent_devices(self, message_id: UUID, subscription_ids: Sequence[UUID]) -> None:
        """Write to the ledger that ``message_id`` reached these subscriptions (before a retry)."""
        ...


#: A lookup waiting for its statement: the user, the message, the caller's answer.
_Lookup = tuple[UUID, UUID, "asyncio.Future[list[UserDevice]]"]


class PostgresSubscriptionStore:
    """Reads a user's subscriptions and keeps the sent-devices ledger, keyed by ``ledger``.

    Lookups asked for together share one statement. The first one asked
    while no statement is being prepared or on the wire schedules one for
    the end of the event loop's turn; the messages an inbox gather lets go
    side by side usually all ask within that turn and join it. Lookups asked
    while a statement is on the wire go together in the next one, sent as
    soon as it returns. Each caller gets exactly its own rows, or the
    statement's error: one failed statement fails every lookup in it (a read
    has no one message to blame, and each caller's message is held or
    retried on its own).
    """

    def __init__(self, pool: asyncpg.Pool, *, ledger: str) -> None:
        self._pool = pool
        self._ledger = ledger
        self._waiting: list[_Lookup] = []  #: for the next statement
        self._in_flight: list[_Lookup] = []  #: in the statement on the wire
        self._looking_up: asyncio.Task[None] | None = None

    async def devices_for(self, user_id: UUID, message_id: UUID) -> list[UserDevice]:
        """The user's subscriptions, each marked if ``message_id`` already reached it.

        Read before any push: with the database away nothing was attempted
        (``NotAttempted``, the runtime holds the message).
        """
        found: asyncio.Future[list[UserDevice]] = asyncio.get_running_loop().create_future()
        self._waiting.append((user_id, message_id, found))
        if self._looking_up is None:
            # a context of its own: not the first caller's correlation id in later statements' logs
            task = asyncio.create_task(self._look_up_while_asked(), context=contextvars.Context())
            task.add_done_callback(self._ended_unstarted)
            self._looking_up = task
        try:
            return await found
        except Exception as exc:
            if database_unreachable(exc):
                raise NotAttempted(f"push subscriptions unreachable: {exc!r}") from exc
            raise

    async def _look_up_while_asked(self) -> None:
        """Run statements until no lookup waits; a task of its own, so that no
        caller's cancellation cancels the others' statement."""
        try:
            await asyncio.sleep(0)  # the rest of this turn's lookups join the first
            while self._waiting:
                self._in_flight, self._waiting = self._waiting, []
                await self._look_up(self._in_flight)
                self._in_flight = []
        finally:
            self._looking_up = None
            self._abandon_lookups()  # only when cancelled: a pass ends with none left

    def _ended_unstarted(self, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never ran its ``finally``."""
        if self._looking_up is task:
            self._looking_up = None
            self._abandon_lookups()

    def _abandon_lookups(self) -> None:
        """Nobody may wait for ever: the lookups left are not attempted (the consumer stops)."""
        left, self._in_flight, self._waiting = [*self._in_flight, *self._waiting], [], []
        for *_, found in left:
            if not found.done():
                found.set_exception(NotAttempted("push subscription lookup cancelled"))

    async def _look_up(self, batch: list[_Lookup]) -> None:
        """One statement for ``batch``; every error of it goes to the batch's callers."""
        batch = [lookup for lookup in batch if not lookup[2].done()]  # callers gone
        if not batch:
            return
        try:
            rows = await self._pool.fetch(
                _SUBSCRIPTIONS,
                [user_id for user_id, _, _ in batch],
                [message_id for _, message_id, _ in batch],
                self._ledger,
            )
            devices: list[list[UserDevice]] = [[] for _ in batch]
            for row in rows:
                devices[row["n"] - 1].append(
                    UserDevice(
                        PushTarget(row["id"], row["endpoint"], row["p256dh"], row["auth"]),
                        already_sent=row["already_sent"],
                    )
                )
        except Exception as exc:
            for *_, found in batch:
                if not found.done():
                    found.set_exception(exc)
            return
        for (*_, found), own in zip(batch, devices, strict=True):
            if not found.done():  # its caller went away meanwhile
                found.set_result(own)

    async def record_sent_devices(self, message_id: UUID, subscription_ids: Sequence[UUID]) -> None:
        """Write to the ledger that ``message_id`` reached these subscriptions (before a retry).

        The pushes were made: with the database away the write is tried
        again until it lands, so the retry never buzzes these devices twice.
        """
        if subscription_ids:
            ids = list(subscription_ids)
            await until_it_lands(
                lambda: self._pool.execute(_RECORD, self._ledger, message_id, ids),
                what=f"push ledger of {message_id}",
            )
