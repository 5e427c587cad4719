"""The inbox: which messages a consumer has already handled (design §6.2).

A message is recorded after its handler succeeded and before it is acked,
together with the follow-up bodies it produced. A redelivery or a replay of
the same ``message_id`` then skips the handler (no second email) and only
publishes those follow-ups again, byte for byte, in case the first publish
was lost in a crash.

Dead-lettered messages are not recorded: replaying them after the cause is
fixed must run the handler.
"""

from __future__ import annotations

import json
from typing import Protocol
from uuid import UUID

import asyncpg

INBOX_DDL = """
CREATE TABLE IF NOT EXISTS consumer_inbox (
    consumer   text        NOT NULL,
    message_id uuid        NOT NULL,
    handled_at timestamptz DEFAULT now(),
    followups  jsonb,
    PRIMARY KEY (consumer, message_id)
)
"""
"""The table behind :class:`PostgresInbox`.

In production the calendar service's alembic migration creates exactly this
table; :meth:`PostgresInbox.ensure_schema` exists for tests and tools.
``followups`` is a JSON array of strings, each a follow-up body as published,
so republishing sends the very same bytes. Old rows may be deleted by
``handled_at`` once no redelivery or replay of them is expected.
"""


class Inbox(Protocol):
    """Durable memory of handled messages, keyed by consumer and message id."""

    async def seen(self, consumer: str, message_id: UUID) -> list[bytes] | None:
        """The follow-up bodies recorded for this message, or None if it is new."""
        ...

    async def record(self, consumer: str, message_id: UUID, followups: list[bytes]) -> None:
        """Remember the message as handled; a second record of it changes nothing."""
        ...


class PostgresInbox:
    """The inbox in PostgreSQL, shared by every replica of a consumer."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def ensure_schema(self) -> None:
        await self._pool.execute(INBOX_DDL)

    async def seen(self, consumer: str, message_id: UUID) -> list[bytes] | None:
        row = await self._pool.fetchrow(
            "SELECT followups FROM consumer_inbox WHERE consumer = $1 AND message_id = $2",
            consumer,
            message_id,
        )
        if row is None:
            return None
        stored = row["followups"]
        return [body.encode() for body in json.loads(stored)] if stored is not None else []

    async def record(self, consumer: str, message_id: UUID, followups: list[bytes]) -> None:
        await self._pool.execute(
            "INSERT INTO consumer_inbox (consumer, message_id, followups)"
            " VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING",
            consumer,
            message_id,
            json.dumps([body.decode() for body in followups]),
        )


class MemoryInbox:
    """An in-memory inbox for unit tests; forgets everything with the process."""

    def __init__(self) -> None:
        self.handled: dict[tuple[str, UUID], list[bytes]] = {}

    async def seen(self, consumer: str, message_id: UUID) -> list[bytes] | None:
        stored = self.handled.get((consumer, message_id))
        return None if stored is None else list(stored)

    async def record(self, consumer: str, message_id: UUID, followups: list[bytes]) -> None:
        self.handled.setdefault((consumer, message_id), list(followups))
