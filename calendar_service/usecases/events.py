"""Events: an organizer creates one and changes it; nobody else may."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import RowMapping

from calendar_service.cache import EventCache
from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import EndsBeforeStart, NotFound, NotYours
from calendar_service.usecases.accounts import account_of


async def create_event(
    uow: UnitOfWork, *, organizer_id: uuid.UUID, fields: Mapping[str, Any]
) -> RowMapping:
    """A new event organized by the caller (whose account must still exist)."""
    await account_of(uow, organizer_id)
    row = await uow.events.add(organizer_id=organizer_id, **fields)
    await uow.commit()
    return row


async def change_event(
    uow: UnitOfWork,
    cache: EventCache,
    *,
    event_id: uuid.UUID,
    caller_id: uuid.UUID,
    changes: Mapping[str, Any],
) -> RowMapping:
    """Apply ``changes`` (organizer only). Moving the start moves its pending reminders.

    Raises ``CapacityBelowSeatsTaken`` when the capacity would drop under the
    seats already taken.
    """
    event = await uow.events.lock(event_id)
    if event is None:
        raise NotFound("event")
    if event["organizer_id"] != caller_id:
        raise NotYours("only the organizer changes an event")
    starts_at = changes.get("starts_at", event["starts_at"])
    ends_at = changes.get("ends_at", event["ends_at"])
    if ends_at is not None and ends_at < starts_at:
        raise EndsBeforeStart()
    row = await uow.events.change(event_id, **changes) if changes else event
    await uow.commit()
    await cache.invalidate(event_id)
    return row
