"""Use cases of the calendar service: each runs in one unit of work.

Handlers here know nothing of HTTP; the API maps their errors to status codes.

Where do the event's counters move? Not here: writing an RSVP row is enough.
The deferred trigger ``move_event_counters`` (migration 0002) applies the
change to the event row inside COMMIT, so that row is locked only while the
server commits, never while a request waits on the event loop; a commit that
would overbook fails on ``ck_events_within_capacity`` and
``UnitOfWork.commit()`` raises ``EventFull``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import RowMapping

from calendar_service.commands import PRODUCER, attendee, commands_for, event_summary
from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import Answer, NothingToCancel, is_change, message_type_for
from shared.schemas import (
    Envelope,
    NotificationCommand,
    RsvpCancelled,
    RsvpCreated,
    RsvpPayload,
    RsvpUpdated,
)

CHANNELS = ("email", "push")
RSVP_MESSAGES: dict[str, type[RsvpCreated] | type[RsvpUpdated] | type[RsvpCancelled]] = {
    "rsvp.created": RsvpCreated,
    "rsvp.updated": RsvpUpdated,
    "rsvp.cancelled": RsvpCancelled,
}


class NotFound(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class NotYours(Exception):
    """The caller may not do this to someone else's event or RSVP (403)."""


@dataclass(frozen=True)
class RsvpResult:
    rsvp: RowMapping
    created: bool
    changed: bool


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
        attendee=attendee(user),
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


async def answer_rsvp(
    uow: UnitOfWork,
    *,
    event_id: uuid.UUID,
    user: RowMapping,
    answer: Answer,
    correlation_id: uuid.UUID | None = None,
) -> RsvpResult:
    """Create or change ``user``'s RSVP; the event message joins the same transaction.

    Whether the seats are free is known only at ``uow.commit()``, which raises
    ``EventFull`` when they are not.
    """
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
        if not is_change(before, answer):
            return RsvpResult(rsvp=existing, created=False, changed=False)
        rsvp = await uow.rsvps.change(existing["id"], answer)

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


async def resend_confirmation(
    uow: UnitOfWork,
    *,
    rsvp: RowMapping,
    user: RowMapping,
    correlation_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """An ``email.send`` confirmation of ``rsvp`` as it stands; email status back to pending.

    The command carries the RSVP's version, so its follow-up moves the status
    on from pending exactly as the first confirmation's did.
    """
    event = await uow.events.with_organizer(rsvp["event_id"])
    assert event is not None, "a foreign key keeps the event"
    payload = NotificationCommand(
        kind="confirmation",
        recipient=attendee(user),
        event=event_summary(event),
        rsvp_id=rsvp["id"],
        status=rsvp["status"],
        rsvp_version=rsvp["version"],
    )
    (command,) = commands_for(payload, ["email"], correlation_id=correlation_id)
    await uow.deliveries.mark_pending(rsvp["id"], rsvp["version"], ["email"])
    await uow.outbox.add(command)
    return command
