"""Unit of work: one transaction, the repositories on it, and the outbox.

Nothing is committed unless ``commit()`` is called; leaving the block
without it (or with an exception) rolls everything back, messages included.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from calendar_service.db.repositories import Deliveries, Events, IdempotencyKeys, Rsvps, Users
from calendar_service.outbox import Outbox


class UnitOfWork:
    users: Users
    events: Events
    rsvps: Rsvps
    deliveries: Deliveries
    idempotency: IdempotencyKeys
    outbox: Outbox

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        self._connection = await self._engine.connect()
        self._transaction = await self._connection.begin()
        connection = self._connection
        self.users = Users(connection)
        self.events = Events(connection)
        self.rsvps = Rsvps(connection)
        self.deliveries = Deliveries(connection)
        self.idempotency = IdempotencyKeys(connection)
        self.outbox = Outbox(connection)
        return self

    async def commit(self) -> None:
        assert self._transaction is not None, "commit() outside `async with`"
        await self._transaction.commit()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        assert self._transaction is not None
        try:
            if self._transaction.is_active:
                await self._transaction.rollback()
        finally:
            await self._connection.close()
