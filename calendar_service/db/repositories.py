"""Repositories of users, events, RSVPs, their notification status and idempotency keys.

The other tables have their own modules beside this one (announcements,
reminders, subscriptions) and the outbox its own (``calendar_service.outbox``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from calendar_service.db.models import (
    EVENT_WITHIN_CAPACITY,
    Event,
    IdempotencyKey,
    NotificationStatus,
    Rsvp,
    User,
    table_of,
)
from calendar_service.domain import Answer
from calendar_service.errors import CapacityBelowSeatsTaken

users = table_of(User)
events = table_of(Event)
rsvps = table_of(Rsvp)
notification_status = table_of(NotificationStatus)
idempotency = table_of(IdempotencyKey)


def violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint PostgreSQL refused, as asyncpg reports it."""
    name: str | None = getattr(exc.driver_exception, "constraint_name", None)
    return name


class Repository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def _one(self, statement: Any) -> RowMapping | None:
        return (await self.connection.execute(statement)).mappings().first()

    async def _all(self, statement: Any) -> Sequence[RowMapping]:
        return (await self.connection.execute(statement)).mappings().all()


class Users(Repository):
    async def add(
        self, *, email: str, name: str, password_hash: str, role: str
    ) -> RowMapping | None:
        """The new user, or None when the email is taken."""
        statement = (
            insert(users)
            .values(id=uuid.uuid4(), email=email, name=name, password_hash=password_hash, role=role)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(users.c.id, users.c.email, users.c.name, users.c.role, users.c.created_at)
        )
        return await self._one(statement)

    async def by_email(self, email: str) -> RowMapping | None:
        return await self._one(select(users).where(users.c.email == email))

    async def by_id(self, user_id: uuid.UUID) -> RowMapping | None:
        return await self._one(select(users).where(users.c.id == user_id))

    async def set_role(self, user_id: uuid.UUID, role: str) -> RowMapping:
        statement = update(users).where(users.c.id == user_id).values(role=role).returning(*users.c)
        row = await self._one(statement)
        assert row is not None
        return row


class Events(Repository):
    async def add(self, *, organizer_id: uuid.UUID, **fields: Any) -> RowMapping:
        statement = (
            insert(events)
            .values(id=uuid.uuid4(), organizer_id=organizer_id, **fields)
            .returning(*events.c)
        )
        row = await self._one(statement)
        assert row is not None
        return row

    async def get(self, event_id: uuid.UUID) -> RowMapping | None:
        return await self._one(select(events).where(events.c.id == event_id))

    async def lock(self, event_id: uuid.UUID) -> RowMapping | None:
        # NO KEY UPDATE: RSVPs inserting (their foreign key takes KEY SHARE) need not wait
        statement = select(events).where(events.c.id == event_id).with_for_update(key_share=True)
        return await self._one(statement)

    async def change(self, event_id: uuid.UUID, **fields: Any) -> RowMapping:
        """Apply ``fields``; CapacityBelowSeatsTaken if capacity would drop under the seats taken.

        Moving ``starts_at`` wakes the scheduler (a trigger, migration 0004): pending
        reminders follow the event because they are computed from it when due.
        """
        statement = update(events).where(events.c.id == event_id).values(**fields)
        try:
            row = await self._one(statement.returning(*events.c))
        except IntegrityError as exc:
            if violated_constraint(exc) == EVENT_WITHIN_CAPACITY:
                raise CapacityBelowSeatsTaken() from exc
            raise
        assert row is not None, "lock() the event first"
        return row

    async def with_organizer(self, event_id: uuid.UUID) -> RowMapping | None:
        statement = (
            select(
                events,
                users.c.name.label("organizer_name"),
                users.c.email.label("organizer_email"),
            )
            .join(users, users.c.id == events.c.organizer_id)
            .where(events.c.id == event_id)
        )
        return await self._one(statement)

    async def page(
        self, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> Sequence[RowMapping]:
        statement = select(events).order_by(events.c.starts_at, events.c.id).limit(limit)
        if after is not None:
            statement = statement.where(tuple_(events.c.starts_at, events.c.id) > after)
        return await self._all(statement)


class Rsvps(Repository):
    async def insert_new(
        self, *, event_id: uuid.UUID, user_id: uuid.UUID, answer: Answer
    ) -> RowMapping | None:
        """The new RSVP, or None when the user already has one for this event."""
        statement = (
            insert(rsvps)
            .values(
                id=uuid.uuid4(),
                event_id=event_id,
                user_id=user_id,
                status=answer.status,
                guests=answer.guests,
                version=1,
            )
            .on_conflict_do_nothing(index_elements=["event_id", "user_id"])
            .returning(*rsvps.c)
        )
        return await self._one(statement)

    async def lock_for_user(self, event_id: uuid.UUID, user_id: uuid.UUID) -> RowMapping | None:
        statement = (
            select(rsvps)
            .where(and_(rsvps.c.event_id == event_id, rsvps.c.user_id == user_id))
            .with_for_update()
        )
        return await self._one(statement)

    async def change(self, rsvp_id: uuid.UUID, answer: Answer) -> RowMapping:
        statement = (
            update(rsvps)
            .where(rsvps.c.id == rsvp_id)
            .values(
                status=answer.status,
                guests=answer.guests,
                version=rsvps.c.version + 1,
                updated_at=func.now(),
            )
            .returning(*rsvps.c)
        )
        row = await self._one(statement)
        assert row is not None
        return row

    async def get(self, rsvp_id: uuid.UUID) -> RowMapping | None:
        statement = (
            select(rsvps, events.c.organizer_id)
            .join(events, events.c.id == rsvps.c.event_id)
            .where(rsvps.c.id == rsvp_id)
        )
        return await self._one(statement)

    async def page(
        self,
        event_id: uuid.UUID,
        *,
        limit: int,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> Sequence[RowMapping]:
        statement = (
            select(rsvps, users.c.name.label("user_name"))
            .join(users, users.c.id == rsvps.c.user_id)
            .where(rsvps.c.event_id == event_id)
            .order_by(rsvps.c.created_at, rsvps.c.id)
            .limit(limit)
        )
        if status is not None:
            statement = statement.where(rsvps.c.status == status)
        if after is not None:
            statement = statement.where(tuple_(rsvps.c.created_at, rsvps.c.id) > after)
        return await self._all(statement)


class NotificationStatuses(Repository):
    """Per RSVP and channel: how far its confirmation got (table ``delivery_status``).

    A change to the RSVP sets its channels back to pending at the new version;
    the consumers' reports then move them on, never back
    (``calendar_service.db.report_batches``).
    """

    async def mark_pending(self, rsvp_id: uuid.UUID, version: int, channels: Sequence[str]) -> None:
        statement = insert(notification_status).values(
            [
                {"rsvp_id": rsvp_id, "channel": c, "status": "pending", "rsvp_version": version}
                for c in channels
            ]
        )
        statement = statement.on_conflict_do_update(
            index_elements=["rsvp_id", "channel"],
            set_={
                "status": "pending",
                "rsvp_version": version,
                "detail": None,
                "updated_at": func.now(),
            },
            where=notification_status.c.rsvp_version <= version,
        )
        await self.connection.execute(statement)

    async def for_rsvp(self, rsvp_id: uuid.UUID) -> dict[str, str]:
        rows = await self._all(
            select(notification_status.c.channel, notification_status.c.status).where(
                notification_status.c.rsvp_id == rsvp_id
            )
        )
        return {row["channel"]: row["status"] for row in rows}


class IdempotencyKeys(Repository):
    async def claim(self, user_id: uuid.UUID, key: str, fingerprint: str) -> RowMapping | None:
        """Reserve ``key``; None if we hold it now, else the earlier request's row.

        A concurrent request with the same key waits on the unique index until
        the first one commits, then sees its stored response.
        """
        inserted = await self._one(
            insert(idempotency)
            .values(
                user_id=user_id,
                key=key,
                request_fingerprint=fingerprint,
                status_code=0,
                response_body=b"",
            )
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(idempotency.c.key)
        )
        if inserted is not None:
            return None
        return await self._one(
            select(idempotency).where(
                and_(idempotency.c.user_id == user_id, idempotency.c.key == key)
            )
        )

    async def store_response(
        self, user_id: uuid.UUID, key: str, status_code: int, body: bytes
    ) -> None:
        await self.connection.execute(
            update(idempotency)
            .where(and_(idempotency.c.user_id == user_id, idempotency.c.key == key))
            .values(status_code=status_code, response_body=body)
        )
