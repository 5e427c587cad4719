"""Use cases of the calendar service: each runs in one unit of work.

Handlers here know nothing of HTTP; the API maps their errors to status codes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.engine import RowMapping

from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import (
    Answer,
    EventFull,
    NothingToCancel,
    counter_delta,
    message_type_for,
)
from shared.schemas import (
    Attendee,
    EventSummary,
    RsvpCancelled,
    RsvpCreated,
    RsvpPayload,
    RsvpUpdated,
)

PRODUCER = "calendar_service"
CHANNELS = ("email", "push")
RSVP_MESSAGES: dict[str, type[RsvpCreated] | type[RsvpUpdated] | type[RsvpCancelled]] = {
    "rsvp.created": RsvpCreated,
    "rsvp.updated": RsvpUpdated,
    "rsvp.cancelled": RsvpCancelled,
}


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


@dataclass(frozen=True)
class RsvpResult:
    rsvp: RowMapping
    created: bool
    changed: bool


def event_summary(event: RowMapping) -> EventSummary:
    return EventSummary(
        event_id=event["id"],
        title=event["title"],
        starts_at=event["starts_at"],
        ends_at=event["ends_at"],
        location=event["location"],
        organizer_name=event.get("organizer_name"),
        organizer_email=event.get("organizer_email"),
    )


async def _publish_change(
    uow: UnitOfWork,
    *,
    event: RowMapping,
    user: RowMapping,
    rsvp: RowMapping,
    before: Answer | None,
    after: Answer,
    correlation_id: uuid.UUID | None,
) -> None:
    message_type = message_type_for(before, after)
    payload = RsvpPayload(
        rsvp_id=rsvp["id"],
        event=event_summary(event),
        attendee=Attendee(user_id=user["id"], email=user["email"], name=user["name"]),
        status=after.status,
        previous_status=before.status if before else None,
        guests=after.guests,
        version=rsvp["version"],
    )
    message = RSVP_MESSAGES[message_type].first(
        payload, producer=PRODUCER, correlation_id=correlation_id
    )
    await uow.deliveries.mark_pending(rsvp["id"], rsvp["version"], CHANNELS)
    await uow.outbox.add(message)


async def _move_counters(
    uow: UnitOfWork, event: RowMapping, before: Answer | None, after: Answer
) -> None:
    delta = counter_delta(before, after)
    if delta.is_zero:
        return
    if await uow.events.apply_counters(event["id"], delta) is None:
        raise EventFull(event["capacity"])


async def answer_rsvp(
    uow: UnitOfWork,
    *,
    event_id: uuid.UUID,
    user: RowMapping,
    answer: Answer,
    correlation_id: uuid.UUID | None = None,
) -> RsvpResult:
    """Create or change ``user``'s RSVP; the event message joins the same transaction."""
    event = await uow.events.with_organizer(event_id)
    if event is None:
        raise NotFound("event")
    user_id = user["id"]

    rsvp = await uow.rsvps.insert_new(event_id=event_id, user_id=user_id, answer=answer)
    before: Answer | None = None
    if rsvp is None:
        existing = await uow.rsvps.lock_for_user(event_id, user_id)
        assert existing is not None, "the conflicting RSVP vanished inside our transaction"
        before = Answer(existing["status"], existing["guests"])
        if before == answer:
            return RsvpResult(rsvp=existing, created=False, changed=False)
        rsvp = await uow.rsvps.change(existing["id"], answer)

    await _move_counters(uow, event, before, answer)
    await _publish_change(
        uow,
        event=event,
        user=user,
        rsvp=rsvp,
        before=before,
        after=answer,
        correlation_id=correlation_id,
    )
    created = before is None or before.status == "cancelled"
    return RsvpResult(rsvp=rsvp, created=created, changed=True)


async def cancel_rsvp(
    uow: UnitOfWork,
    *,
    event_id: uuid.UUID,
    user: RowMapping,
    correlation_id: uuid.UUID | None = None,
) -> RowMapping:
    event = await uow.events.with_organizer(event_id)
    if event is None:
        raise NotFound("event")
    existing = await uow.rsvps.lock_for_user(event_id, user["id"])
    if existing is None or existing["status"] == "cancelled":
        raise NothingToCancel()
    before = Answer(existing["status"], existing["guests"])
    after = Answer("cancelled", existing["guests"])
    rsvp = await uow.rsvps.change(existing["id"], after)
    await _move_counters(uow, event, before, after)
    await _publish_change(
        uow,
        event=event,
        user=user,
        rsvp=rsvp,
        before=before,
        after=after,
        correlation_id=correlation_id,
    )
    return rsvp
