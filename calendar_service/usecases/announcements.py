"""Announcements: an organizer posts one message to everyone going, and watches its progress.

Posting stores one row; the scheduler (woken by a trigger at commit) fans it
out in batches (``calendar_service.announcements.fan_out_batch``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.engine import RowMapping

from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import Caller
from calendar_service.errors import NotFound, NotYours
from calendar_service.ratelimit import Quota
from calendar_service.usecases.accounts import account_of


async def post_announcement(
    uow: UnitOfWork,
    quota: Quota,
    *,
    event_id: uuid.UUID,
    caller_id: uuid.UUID,
    subject: str,
    body: str,
    channels: Sequence[str],
    correlation_id: uuid.UUID,
) -> RowMapping:
    """Store the announcement; counted per event by ``quota``, each post reaching everyone."""
    await account_of(uow, caller_id)
    event = await uow.events.get(event_id)
    if event is None:
        raise NotFound("event")
    if event["organizer_id"] != caller_id:
        raise NotYours("only the organizer announces to an event's attendees")
    row = await uow.announcements.add(
        event_id=event_id,
        author_id=caller_id,
        subject=subject,
        body=body,
        channels=channels,
        correlation_id=correlation_id,
    )
    # a stranger (403) or an unknown event (404) is refused before a use is
    # counted; past the limit the uncommitted row is rolled back
    await quota.take(str(event_id))
    await uow.commit()
    return row


async def announcement_progress(
    uow: UnitOfWork, *, event_id: uuid.UUID, announcement_id: uuid.UUID, caller: Caller
) -> tuple[RowMapping, dict[str, dict[str, int]]]:
    """The announcement and its recipients' outcomes so far, {channel: {status: n}}."""
    row = await uow.announcements.get(event_id, announcement_id)
    if row is None:
        raise NotFound("announcement")
    if row["author_id"] != caller.user_id and not caller.is_admin:
        raise NotYours("only the organizer sees this")
    return row, await uow.announcements.counts(announcement_id)
