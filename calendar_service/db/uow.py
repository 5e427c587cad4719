"""Unit of work: one transaction, the repositories on it, and the outbox.

Waiting for a connection is bounded by the pool's timeout; a full pool is
``Overloaded`` (503 with Retry-After), not a 500 after 30 s.
Nothing is committed unless ``commit()`` is called; leaving the block
without it (or with an exception) rolls everything back, messages included.
Some rules are checked only at COMMIT (the event counters move in a deferred
trigger); ``commit()`` raises the domain error such a failure means.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from calendar_service.db.announcements import Announcements
from calendar_service.db.audit import AuditLog
from calendar_service.db.models import EVENT_WITHIN_CAPACITY
from calendar_service.db.reminders import Reminders
from calendar_service.db.repositories import (
    Events,
    IdempotencyKeys,
    NotificationStatuses,
    Rsvps,
    Users,
    violated_constraint,
)
from calendar_service.db.subscriptions import Subscriptions
from calendar_service.errors import EventFull, Overloaded
from calendar_service.outbox import Outbox


class UnitOfWork:
    users: Users
    events: Events
    rsvps: Rsvps
    notifications: NotificationStatuses
    idempotency: IdempotencyKeys
    subscriptions: Subscriptions
    audit: AuditLog
    outbox: Outbox
    reminders: Reminders
    announcements: Announcements

    def __init__(self, engine: AsyncEngine, *, read_only: bool = False) -> None:
        """``read_only``: each statement on its own (autocommit), for reads that write nothing.

        That spares the BEGIN and the ROLLBACK, two of a read's four round trips
        (the pool's ping and the query are the others); its queries may then
        see different snapshots, which a page or an event read does not mind.
        """
        self._engine = engine
        self._read_only = read_only
        self._connection: AsyncConnection | None = None
        self._transaction: AsyncTransaction | None = None

    async def __aenter__(self) -> Self:
        try:
            self._connection = await self._engine.connect()
        except PoolTimeout as exc:
            raise Overloaded() from exc
        if self._read_only:
            await self._connection.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._transaction = await self._connection.begin()
        connection = self._connection
        self.users = Users(connection)
        self.events = Events(connection)
        self.rsvps = Rsvps(connection)
        self.notifications = NotificationStatuses(connection)
        self.idempotency = IdempotencyKeys(connection)
        self.subscriptions = Subscriptions(connection)
        self.audit = AuditLog(connection)
        self.outbox = Outbox(connection)
        self.reminders = Reminders(connection)
        self.announcements = Announcements(connection)
        return self

    async def commit(self) -> None:
        """Commit, or raise ``EventFull`` if the RSVP counters overbook the event.

        The counters move in a deferred trigger, so the capacity check fails
        here, at COMMIT. PostgreSQL has then already rolled the transaction
        back (an Idempotency-Key claimed in it is released too); leaving the
        block closes the connection, which returns it to the pool clean.
        """
        assert self._transaction is not None, "commit() outside `async with`, or on a read-only one"
        try:
            await self._transaction.commit()
        except IntegrityError as exc:
            if violated_constraint(exc) == EVENT_WITHIN_CAPACITY:
                raise EventFull() from exc
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._connection is not None
        try:
            if self._transaction is not None and self._transaction.is_active:
                await self._transaction.rollback()
        finally:
            await self._connection.close()
