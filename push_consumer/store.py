"""The push consumer's database access: the calendar's subscriptions (read) and its device ledger.

It reads ``push_subscriptions`` and never writes it: a subscription a push
service calls gone is reported with ``push.subscription_expired`` and the
calendar service deletes it. It writes only its sent-devices ledger (the
``push_deliveries`` table): which subscriptions a message has already
reached, so a retry of that message skips them.
"""

from __future__ import annotations

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

_SUBSCRIPTIONS = """
SELECT s.id, s.endpoint, s.p256dh, s.auth, d.subscription_id IS NOT NULL AS already_sent
FROM push_subscriptions s
LEFT JOIN push_deliveries d
       ON d.consumer = $2 AND d.message_id = $3 AND d.subscription_id = s.id
WHERE s.user_id = $1
ORDER BY s.created_at, s.id
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


class PostgresSubscriptionStore:
    """Reads a user's subscriptions and keeps the sent-devices ledger, keyed by ``ledger``."""

    def __init__(self, pool: asyncpg.Pool, *, ledger: str) -> None:
        self._pool = pool
        self._ledger = ledger

    async def devices_for(self, user_id: UUID, message_id: UUID) -> list[UserDevice]:
        """The user's subscriptions, each marked if ``message_id`` already reached it.

        Read before any push: with the database away nothing was attempted
        (``NotAttempted``, the runtime holds the message).
        """
        try:
            rows = await self._pool.fetch(_SUBSCRIPTIONS, user_id, self._ledger, message_id)
        except Exception as exc:
            if database_unreachable(exc):
                raise NotAttempted(f"push subscriptions unreachable: {exc!r}") from exc
            raise
        return [
            UserDevice(
                PushTarget(row["id"], row["endpoint"], row["p256dh"], row["auth"]),
                already_sent=row["already_sent"],
            )
            for row in rows
        ]

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
