"""The inbox: which messages a consumer has already handled (design §6.2).

A message is claimed before its handler runs (so two copies in flight at
once never both run it), and recorded after its handler succeeded and
before it is acked,
together with the follow-up bodies it produced. A redelivery or a replay of
the same ``message_id`` then skips the handler (no second email) and only
publishes those follow-ups again, byte for byte, in case the first publish
was lost in a crash.

Dead-lettered messages are not recorded: replaying them after the cause is
fixed must run the handler.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

import asyncpg

from shared.messaging.errors import NotAttempted
from shared.messaging.inbox_session import InboxSession, Key
from shared.service.database import database_unreachable

INBOX_DDL = """
CREATE TABLE IF NOT EXISTS consumer_inbox (
    consumer   text        NOT NULL,
    message_id uuid        NOT NULL,
    handled_at timestamptz DEFAULT now(),
    followups  jsonb,
    PRIMARY KEY (consumer, message_id)
)
"""
"""The table behind :class:`PostgresInbox`, as far as the inbox needs it.

In production the calendar service's alembic migration creates the table
(0001), with stricter columns (``consumer varchar(64)``, ``handled_at`` and
``followups`` NOT NULL, ``followups`` defaulting to ``[]``) and an index on
``handled_at``; :meth:`PostgresInbox.ensure_schema` creates this lighter
version for tests and tools.
``followups`` is a JSON array of strings, each a follow-up body as published,
so republishing sends the very same bytes. Old rows may be deleted by
``handled_at`` once no redelivery or replay of them is expected.
"""


class Claim(Protocol):
    """A consumer's hold on one message id while it handles it."""

    #: The follow-up bodies recorded earlier, or None if the message is new.
    followups: list[bytes] | None
    #: True when another worker holds this message right now: try again later.
    busy: bool

    async def record(self, followups: list[bytes]) -> None:
        """Remember the message as handled (durably) before the claim is released."""
        ...


class Inbox(Protocol):
    """Durable memory of handled messages, keyed by consumer and message id."""

    def claim(self, consumer: str, message_id: UUID) -> AbstractAsyncContextManager[Claim]:
        """Hold ``message_id`` for ``consumer`` until the block ends.

        Two copies of one message in flight at once (a redelivery after a
        connection loss, a duplicate publish) must not both run the handler:
        the second finds the claim ``busy``. Raises ``NotAttempted`` when
        the inbox cannot be reached: nothing was done, the message waits.
        """
        ...

    async def seen(self, consumer: str, message_id: UUID) -> list[bytes] | None:
        """The follow-up bodies recorded for this message, or None if it is new."""
        ...


#: Lock first, then look: a function, because one SQL statement reads from a
#: snapshot taken when it starts, before its lock is held. A statement that
#: locked and looked at once could start before another worker's record
#: committed, get the lock once that worker let go, and still see the message
#: as new. A VOLATILE function takes a fresh snapshot for each query in it, so
#: the look-up sees every record committed before the lock was granted, and
#: the claim stays one round trip. Migration 0006 creates it in production;
#: the runtime now claims through ``consumer_inbox_claim_many`` below.
INBOX_CLAIM_FUNCTION = """
CREATE OR REPLACE FUNCTION consumer_inbox_claim(p_consumer text, p_message_id uuid)
RETURNS TABLE (locked boolean, handled boolean, stored jsonb)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    locked := pg_try_advisory_lock(hashtextextended(p_consumer || '/' || p_message_id::text, 0));
    SELECT true, i.followups INTO handled, stored
    FROM consumer_inbox i WHERE i.consumer = p_consumer AND i.message_id = p_message_id;
    handled := coalesce(handled, false);
    RETURN NEXT;
END
$$
"""

#: The same claim for a batch, after releasing the locks of a batch: first the
#: unlocks (their records committed before this call was sent), then every
#: lock, then one look-up whose snapshot is taken after all of them are held,
#: so the 0006 race stays closed. Rows come back in the order of ``p_ids``.
#: Each id is a ``LATERAL ... LIMIT 1`` probe of the primary key: as a join,
#: the planner hashed the ids and scanned the whole table whenever it had not
#: analyzed it yet, and the function kept that plan. Migration 0012 creates
#: it in production.
INBOX_CLAIM_MANY_FUNCTION = """
CREATE OR REPLACE FUNCTION consumer_inbox_claim_many(
    p_release_consumers text[], p_release_ids uuid[], p_consumers text[], p_ids uuid[]
)
RETURNS TABLE (locked boolean, handled boolean, stored jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_locked boolean[];
BEGIN
    PERFORM pg_advisory_unlock(hashtextextended(r.c || '/' || r.m::text, 0))
    FROM unnest(p_release_consumers, p_release_ids) AS r(c, m);
    SELECT coalesce(array_agg(
        pg_try_advisory_lock(hashtextextended(w.c || '/' || w.m::text, 0)) ORDER BY w.n
    ), '{}') INTO v_locked
    FROM unnest(p_consumers, p_ids) WITH ORDINALITY AS w(c, m, n);
    RETURN QUERY
    SELECT v_locked[w.n::int], i.found IS NOT NULL, i.followups
    FROM unnest(p_consumers, p_ids) WITH ORDINALITY AS w(c, m, n)
    LEFT JOIN LATERAL (
        SELECT true AS found, x.followups FROM consumer_inbox x
        WHERE x.consumer = w.c AND x.message_id = w.m
        LIMIT 1
    ) i ON true
    ORDER BY w.n;
END
$$
"""
_RECORD = (
    "INSERT INTO consumer_inbox (consumer, message_id, followups)"
    " VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING"
)


def _decode(stored: str | None) -> list[bytes]:
    return [body.encode() for body in json.loads(stored)] if stored is not None else []


def _encode(followups: list[bytes]) -> str:
    return json.dumps([body.decode() for body in followups])


@dataclass
class _PostgresClaim:
    session: InboxSession | None
    key: Key
    followups: list[bytes] | None
    busy: bool

    async def record(self, followups: list[bytes]) -> None:
        assert self.session is not None, "a busy claim records nothing"
        await self.session.record(self.key, _encode(followups))


class _RecordedByHandler:
    """A message whose handler records it, in the same statement as its effect."""

    followups: list[bytes] | None = None
    busy = False

    async def record(self, followups: list[bytes]) -> None:
        """Nothing left to do: the handler's statement recorded it (no follow-ups)."""


def record_handled_sql(consumer: int, message_ids: int) -> str:
    """An INSERT of inbox records for a handler's own statement (a ``WITH`` part, say).

    ``consumer`` and ``message_ids`` are the numbers of its parameters: the
    consumer's key (``<runtime>/<queue>``) and a ``uuid[]``. A message
    recorded before stays as it was.
    """
    return (
        "INSERT INTO consumer_inbox (consumer, message_id, followups)"
        f" SELECT ${consumer}, unnest(${message_ids}::uuid[]), '[]'::jsonb"
        " ON CONFLICT DO NOTHING"
    )


class PostgresInbox:
    """The inbox in PostgreSQL, shared by every replica of a consumer.

    A claim is a session-level advisory lock on (consumer, message id), taken
    in the same round trip as the look-up, and released after the record
    committed, so a waiting copy then sees the message as handled. Claims,
    records and releases of all messages in flight go out in batches on two
    connections (see :mod:`shared.messaging.inbox_session`); the pool needs
    two for them, plus whatever else uses it.

    ``recorded_by_handler=True`` is for handlers whose every effect is
    idempotent by itself (a row set by "never regress" rules, a delete), who
    publish nothing, and who record the messages they applied in their own
    statement (:func:`record_handled_sql`): running one twice changes
    nothing, so a claim's lock and look-up, and a record of its own, would
    buy nothing but round trips. Such an inbox takes every message as new
    and writes nothing; the pool then never holds an advisory lock, so it
    may skip asyncpg's reset.

    ``gather_s`` and ``gather_max``: claims that find the inbox idle wait
    that long for company, or until that many are asked for
    (:class:`~shared.messaging.inbox_session.InboxSession`).
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        recorded_by_handler: bool = False,
        gather_s: float = 0.0,
        gather_max: int = 16,
    ) -> None:
        self._pool = pool
        self._claims = not recorded_by_handler
        self._session = InboxSession(pool, gather_s=gather_s, gather_max=gather_max)
        self._held: set[Key] = set()  # session locks stack: a second copy here must not

    @property
    def claim_batches(self) -> int:
        """Round trips that claimed so far: for tests and benchmarks."""
        return self._session.claim_batches

    async def ensure_schema(self) -> None:
        await self._pool.execute(INBOX_DDL)
        await self._pool.execute(INBOX_CLAIM_FUNCTION)
        await self._pool.execute(INBOX_CLAIM_MANY_FUNCTION)

    @asynccontextmanager
    async def claim(self, consumer: str, message_id: UUID) -> AsyncIterator[Claim]:
        key = (consumer, message_id)
        if not self._claims:
            yield _RecordedByHandler()
            return
        if key in self._held:  # another copy is being handled in this process
            yield _PostgresClaim(None, key, followups=None, busy=True)
            return
        self._held.add(key)
        try:
            try:
                result = await self._session.claim(key)
            except Exception as exc:
                if database_unreachable(exc):
                    raise NotAttempted(f"inbox unreachable: {exc!r}") from exc
                raise
            try:
                yield _PostgresClaim(
                    session=self._session if result.locked else None,
                    key=key,
                    followups=_decode(result.stored) if result.handled else None,
                    busy=not result.locked,
                )
            finally:
                self._session.release(key, result)
        finally:
            self._held.discard(key)

    async def seen(self, consumer: str, message_id: UUID) -> list[bytes] | None:
        row = await self._pool.fetchrow(
            "SELECT followups FROM consumer_inbox WHERE consumer = $1 AND message_id = $2",
            consumer,
            message_id,
        )
        return None if row is None else _decode(row["followups"])

    async def record(self, consumer: str, message_id: UUID, followups: list[bytes]) -> None:
        await self._pool.execute(_RECORD, consumer, message_id, _encode(followups))
