"""Announcements fanned out: an organizer's message, one command per attendee and channel.

Posting (``usecases.announcements``) writes one row and returns (202); the
scheduler fans it out here in batches, each batch one transaction that queues
its recipients, writes their commands to the outbox and moves the
announcement's keyset cursor. An event
with 50,000 attendees is a hundred short transactions, not one long one, and
a scheduler that dies between batches resumes at the stored cursor (the
commands' ids are derived from the announcement and the recipient, so even a
batch written twice would be refused by the outbox's unique message id).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from calendar_service.commands import attendee, commands_for, event_summary
from calendar_service.db.uow import UnitOfWork
from shared.schemas import Envelope, NotificationCommand


def _commands(announcement: RowMapping, recipients: Sequence[RowMapping]) -> list[Envelope[Any]]:
    event = event_summary(announcement, event_id=announcement["event_id"])
    messages: list[Envelope[Any]] = []
    for row in recipients:
        payload = NotificationCommand(
            kind="announcement",
            recipient=attendee(row, user_key="user_id"),
            event=event,
            rsvp_id=row["rsvp_id"],
            announcement_id=announcement["id"],
            subject=announcement["subject"],
            body=announcement["body"],
        )
        messages += commands_for(
            payload,
            announcement["channels"],
            correlation_id=announcement["correlation_id"],
            key=f"announcement:{announcement['id']}:{row['user_id']}",
        )
    return messages


async def fan_out_batch(engine: AsyncEngine, *, batch_size: int, now: datetime) -> int | None:
    """Queue the next batch of the oldest announcement still fanning out.

    Returns how many attendees the batch queued, or None when no announcement
    is waiting (or every waiting one is being fanned out by another scheduler).
    """
    async with UnitOfWork(engine) as uow:
        announcement = await uow.announcements.claim_fanning_out()
        if announcement is None:
            return None
        cursor = None
        if announcement["cursor_created_at"] is not None:
            cursor = (announcement["cursor_created_at"], announcement["cursor_rsvp_id"])
        recipients = await uow.announcements.going_after(
            announcement["event_id"], cursor, batch_size
        )
        await uow.announcements.queue(
            announcement["id"], [r["user_id"] for r in recipients], announcement["channels"]
        )
        await uow.outbox.add(*_commands(announcement, recipients))
        last = recipients[-1] if recipients else None
        await uow.announcements.advance(
            announcement["id"],
            cursor=(last["created_at"], last["rsvp_id"]) if last else None,
            added=len(recipients),
            done_at=now if len(recipients) < batch_size else None,
        )
        await uow.commit()
        return len(recipients)
