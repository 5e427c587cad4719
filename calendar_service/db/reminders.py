"""The reminders repository: due windows, their attendees, and what was sent.

A *window* is one (event, offset) pair: "remind everyone going to this event
``offset`` before it starts". The scheduler finds the windows due now, works
through each window's attendees, and writes a ``reminder_windows`` row once
a window is finished for the event's current start (migration 0005). A
finished window costs one primary-key probe per pass, whatever its number of
attendees, so a pass reads only what is left to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import DateTime, Integer, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.engine import RowMapping

from calendar_service.db.models import Reminder, ReminderWindow, table_of
from calendar_service.db.repositories import Repository

reminders = table_of(Reminder)
windows = table_of(ReminderWindow)

_NOW = bindparam("now", type_=DateTime(timezone=True))
_OFFSETS = bindparam("offsets", type_=ARRAY(Integer))

#: Windows due at :now (the event starts within the offset and has not
#: started) and not finished for the event's current start. ``superseded``
#: says a shorter window of the same event is due too: after downtime, or an
#: event moved close, only the nearest reminder is worth sending.
DUE_WINDOWS = text(
    """
SELECT e.id AS event_id, o.offset_s, e.starts_at,
       EXISTS (SELECT 1 FROM unnest(CAST(:offsets AS integer[])) AS shorter(offset_s)
               WHERE shorter.offset_s < o.offset_s
                 AND e.starts_at <= :now + make_interval(secs => shorter.offset_s)) AS superseded
FROM unnest(CAST(:offsets AS integer[])) AS o(offset_s)
JOIN events e
  ON e.starts_at > :now AND e.starts_at <= :now + make_interval(secs => o.offset_s)
WHERE NOT EXISTS (
    SELECT 1 FROM reminder_windows w
    WHERE w.event_id = e.id AND w.offset_s = o.offset_s AND w.starts_at = e.starts_at
)
ORDER BY e.starts_at, o.offset_s
LIMIT :limit
"""
).bindparams(_NOW, _OFFSETS)

#: The attendees of one window still owed a reminder. Going, and going since
#: before the window opened (no late "24 h before" for someone who answered
#: an hour ago). RSVP rows are claimed SKIP LOCKED, so schedulers split the
#: work; the event row is read FOR SHARE, so an organizer moving it waits for
#: this batch, or this batch (re-checking ``starts_at``) finds nothing.
WINDOW_ATTENDEES = text(
    """
SELECT r.id AS rsvp_id, r.event_id, r.user_id, r.version AS rsvp_version,
       e.starts_at - make_interval(secs => :offset_s) AS due_at,
       e.title, e.starts_at, e.ends_at, e.location,
       organizer.name AS organizer_name, organizer.email AS organizer_email,
       attendee.email, attendee.name
FROM events e
JOIN rsvps r
  ON r.event_id = e.id AND r.status = 'going'
 AND r.created_at <= e.starts_at - make_interval(secs => :offset_s)
JOIN users attendee ON attendee.id = r.user_id
JOIN users organizer ON organizer.id = e.organizer_id
WHERE e.id = :event_id AND e.starts_at = :starts_at AND e.starts_at > :now
  AND NOT EXISTS (
    SELECT 1 FROM reminders m
    WHERE m.event_id = r.event_id AND m.user_id = r.user_id AND m.offset_s = :offset_s
  )
ORDER BY r.created_at, r.id
LIMIT :limit
FOR UPDATE OF r SKIP LOCKED
FOR SHARE OF e
"""
).bindparams(_NOW, bindparam("starts_at", type_=DateTime(timezone=True)))

#: Attendees still owed, read without skipping: zero means the window is done.
WINDOW_OWED = text(
    """
SELECT count(*) FROM rsvps r
JOIN events e ON e.id = r.event_id
WHERE r.event_id = :event_id AND r.status = 'going'
  AND r.created_at <= e.starts_at - make_interval(secs => :offset_s)
  AND NOT EXISTS (
    SELECT 1 FROM reminders m
    WHERE m.event_id = r.event_id AND m.user_id = r.user_id AND m.offset_s = :offset_s
  )
"""
)

#: The earliest window that falls due after :now, one index probe per offset.
NEXT_DUE = text(
    """
SELECT min(e.starts_at - make_interval(secs => o.offset_s)) AS next_due
FROM unnest(CAST(:offsets AS integer[])) AS o(offset_s)
CROSS JOIN LATERAL (
    SELECT starts_at FROM events
    WHERE starts_at > :now + make_interval(secs => o.offset_s)
    ORDER BY starts_at LIMIT 1
) e
"""
).bindparams(_NOW, _OFFSETS)

#: (event_id, user_id, offset_s): a reminder's identity
ReminderKey = tuple[uuid.UUID, uuid.UUID, int]


class Reminders(Repository):
    async def due_windows(
        self, *, now: datetime, offsets: Sequence[int], limit: int
    ) -> Sequence[RowMapping]:
        result = await self.connection.execute(
            DUE_WINDOWS, {"now": now, "offsets": list(offsets), "limit": limit}
        )
        return result.mappings().all()

    async def claim_attendees(
        self, window: RowMapping, *, now: datetime, limit: int
    ) -> Sequence[RowMapping]:
        result = await self.connection.execute(
            WINDOW_ATTENDEES,
            {
                "event_id": window["event_id"],
                "offset_s": window["offset_s"],
                "starts_at": window["starts_at"],
                "now": now,
                "limit": limit,
            },
        )
        return result.mappings().all()

    async def owed(self, window: RowMapping) -> int:
        result = await self.connection.execute(
            WINDOW_OWED, {"event_id": window["event_id"], "offset_s": window["offset_s"]}
        )
        return int(result.scalar_one())

    async def finish(
        self, finished: Sequence[RowMapping], *, now: datetime, superseded: bool
    ) -> None:
        """Close these windows for their event's start, in one statement."""
        if not finished:
            return
        await self.connection.execute(
            insert(windows)
            .values(
                [
                    {
                        "event_id": window["event_id"],
                        "offset_s": window["offset_s"],
                        "starts_at": window["starts_at"],
                        "finished_at": now,
                        "superseded": superseded,
                    }
                    for window in finished
                ]
            )
            .on_conflict_do_nothing()
        )

    async def record_sent(
        self, due: Iterable[RowMapping], *, offset_s: int, now: datetime
    ) -> set[ReminderKey]:
        """Insert the reminder rows; the keys that were new (the others were sent already)."""
        values = [
            {
                "event_id": row["event_id"],
                "user_id": row["user_id"],
                "offset_s": offset_s,
                "rsvp_id": row["rsvp_id"],
                "due_at": row["due_at"],
                "sent_at": now,
            }
            for row in due
        ]
        if not values:
            return set()
        statement = (
            insert(reminders)
            .values(values)
            .on_conflict_do_nothing()
            .returning(reminders.c.event_id, reminders.c.user_id, reminders.c.offset_s)
        )
        rows = (await self.connection.execute(statement)).all()
        return {(r.event_id, r.user_id, r.offset_s) for r in rows}

    async def next_due(self, *, now: datetime, offsets: Sequence[int]) -> datetime | None:
        result = await self.connection.execute(NEXT_DUE, {"now": now, "offsets": list(offsets)})
        value: datetime | None = result.scalar()
        return value
