"""The announcements repository: posts, their fan-out cursor, and recipients' outcomes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    and_,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import RowMapping

from calendar_service.db.models import Announcement, AnnouncementDelivery, table_of
from calendar_service.db.repositories import Repository, events, rsvps, users

announcements = table_of(Announcement)
announcement_deliveries = table_of(AnnouncementDelivery)


class Announcements(Repository):
    async def add(
        self,
        *,
        event_id: uuid.UUID,
        author_id: uuid.UUID,
        subject: str,
        body: str,
        channels: Sequence[str],
        correlation_id: uuid.UUID,
    ) -> RowMapping:
        statement = (
            insert(announcements)
            .values(
                id=uuid.uuid4(),
                event_id=event_id,
                author_id=author_id,
                subject=subject,
                body=body,
                channels=list(channels),
                correlation_id=correlation_id,
            )
            .returning(announcements)
        )
        row = await self._one(statement)
        assert row is not None
        return row

    async def get(self, event_id: uuid.UUID, announcement_id: uuid.UUID) -> RowMapping | None:
        return await self._one(
            select(announcements).where(
                and_(announcements.c.id == announcement_id, announcements.c.event_id == event_id)
            )
        )

    async def claim_fanning_out(self) -> RowMapping | None:
        """The oldest announcement still fanning out that no other scheduler holds, locked."""
        statement = (
            select(
                announcements,
                events.c.title,
                events.c.starts_at,
                events.c.ends_at,
                events.c.location,
                users.c.name.label("organizer_name"),
                users.c.email.label("organizer_email"),
            )
            .join(events, events.c.id == announcements.c.event_id)
            .join(users, users.c.id == events.c.organizer_id)
            .where(announcements.c.fanned_out_at.is_(None))
            .order_by(announcements.c.created_at)
            .limit(1)
            .with_for_update(of=announcements, skip_locked=True)
        )
        return await self._one(statement)

    async def going_after(
        self, event_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[RowMapping]:
        """The next ``limit`` going attendees in (created_at, id) order."""
        statement = (
            select(
                rsvps.c.id.label("rsvp_id"),
                rsvps.c.created_at,
                rsvps.c.user_id,
                users.c.email,
                users.c.name,
            )
            .join(users, users.c.id == rsvps.c.user_id)
            .where(and_(rsvps.c.event_id == event_id, rsvps.c.status == "going"))
            .order_by(rsvps.c.created_at, rsvps.c.id)
            .limit(limit)
        )
        if after is not None:
            statement = statement.where(tuple_(rsvps.c.created_at, rsvps.c.id) > after)
        return await self._all(statement)

    async def queue(
        self, announcement_id: uuid.UUID, user_ids: Sequence[uuid.UUID], channels: Sequence[str]
    ) -> None:
        values = [
            {"announcement_id": announcement_id, "user_id": u, "channel": c}
            for u in user_ids
            for c in channels
        ]
        if values:
            await self.connection.execute(
                insert(announcement_deliveries).values(values).on_conflict_do_nothing()
            )

    async def advance(
        self,
        announcement_id: uuid.UUID,
        *,
        cursor: tuple[datetime, uuid.UUID] | None,
        added: int,
        done_at: datetime | None,
    ) -> None:
        values: dict[str, object] = {
            "recipients": announcements.c.recipients + added,
            "fanned_out_at": done_at,
        }
        if cursor is not None:
            values["cursor_created_at"], values["cursor_rsvp_id"] = cursor
        await self.connection.execute(
            update(announcements).where(announcements.c.id == announcement_id).values(values)
        )

    async def counts(self, announcement_id: uuid.UUID) -> dict[str, dict[str, int]]:
        """{channel: {status: n}} over the recipients queued so far."""
        rows = await self._all(
            select(
                announcement_deliveries.c.channel,
                announcement_deliveries.c.status,
                func.count().label("n"),
            )
            .where(announcement_deliveries.c.announcement_id == announcement_id)
            .group_by(announcement_deliveries.c.channel, announcement_deliveries.c.status)
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["channel"], {})[row["status"]] = row["n"]
        return counts
