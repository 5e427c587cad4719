"""Resending an RSVP's confirmation: a point-to-point ``email.send`` to its owner."""

from __future__ import annotations

import uuid
from typing import Any

from calendar_service.commands import attendee, commands_for, event_summary
from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import NotFound, NotYours
from calendar_service.ratelimit import Quota
from calendar_service.usecases.accounts import account_of
from shared.schemas import Envelope, NotificationCommand


async def resend_confirmation(
    uow: UnitOfWork,
    quota: Quota,
    *,
    rsvp_id: uuid.UUID,
    caller_id: uuid.UUID,
    correlation_id: uuid.UUID | None = None,
) -> Envelope[Any]:
    """Queue the confirmation of the caller's RSVP again; its email status goes back to pending.

    Counted per RSVP by ``quota`` (after the ownership check, so a stranger
    cannot use up the owner's resends). The command carries the RSVP's
    version, so its follow-up moves the status on exactly as the first
    confirmation's did.
    """
    user = await account_of(uow, caller_id)
    rsvp = await uow.rsvps.get(rsvp_id)
    if rsvp is None:
        raise NotFound("RSVP")
    if rsvp["user_id"] != caller_id:
        raise NotYours("not your RSVP")
    await quota.take(str(rsvp_id))
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
    await uow.notifications.mark_pending(rsvp["id"], rsvp["version"], ["email"])
    await uow.outbox.add(command)
    await uow.commit()
    return command
