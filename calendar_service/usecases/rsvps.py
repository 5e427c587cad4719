"""RSVPs: answer (once per Idempotency-Key), withdraw, and read one or an event's.

An answer or a withdrawal writes the RSVP, sets its notifications back to
pending and adds its ``rsvp.*`` message to the outbox, all in one commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import RowMapping

from calendar_service.cache import EventCache
from calendar_service.commands import PRODUCER, attendee, event_summary
from calendar_service.db.answers import AnswerRequest, StoredAnswer
from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import CHANNELS, Answer, Caller, is_change, message_type_for
from calendar_service.errors import (
    AccountGone,
    IdempotencyKeyReused,
    NotFound,
    NothingToCancel,
    NotYours,
)
from calendar_service.usecases.accounts import account_of
from shared.schemas import RsvpCancelled, RsvpCreated, RsvpPayload, RsvpUpdated

RSVP_MESSAGES: dict[str, type[RsvpCreated] | type[RsvpUpdated] | type[RsvpCancelled]] = {
    "rsvp.created": RsvpCreated,
    "rsvp.updated": RsvpUpdated,
    "rsvp.cancelled": RsvpCancelled,
}


@dataclass(frozen=True)
class Answered:
    """The RSVP after an answer, and whether the answer was new or changed anything."""

    rsvp: RowMapping
    created: bool
    changed: bool
    notifications: dict[str, str]


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's key for one request; ``fingerprint`` tells a repeat from a different request."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class Reply:
    """What the client is shown, stored with its Idempotency-Key to be shown again."""

    status_code: int
    body: bytes
    replayed: bool = False


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
    payload = RsvpPayload(
        rsvp_id=rsvp["id"],
        event=event_summary(event),
        attendee=attendee(user),
        status=after.status,
        previous_status=before.status if before else None,
        guests=after.guests,
        version=rsvp["version"],
    )
    message = RSVP_MESSAGES[message_type_for(before, after)].first(
        payload, producer=PRODUCER, correlation_id=correlation_id
    )
    await uow.notifications.mark_pending(rsvp["id"], rsvp["version"], CHANNELS)
    await uow.outbox.add(message)


async def stage_answer(
    uow: UnitOfWork,
    *,
    event_id: uuid.UUID,
    user: RowMapping,
    answer: Answer,
    correlation_id: uuid.UUID | None = None,
) -> Answered:
    """Create or change ``user``'s RSVP and add its message, without committing.

    Whether the seats are free is known only at ``uow.commit()``, which raises
    ``EventFull`` when they are not.
    """
    event = await uow.events.with_organizer(event_id)
    if event is None:
        raise NotFound("event")
    rsvp = await uow.rsvps.insert_new(event_id=event_id, user_id=user["id"], answer=answer)
    before: Answer | None = None
    if rsvp is None:
        existing = await uow.rsvps.lock_for_user(event_id, user["id"])
        assert existing is not None, "the conflicting RSVP vanished inside our transaction"
        before = Answer(existing["status"], existing["guests"])
        if not is_change(before, answer):
            stored = await uow.notifications.for_rsvp(existing["id"])
            return Answered(existing, created=False, changed=False, notifications=stored)
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
    pending = dict.fromkeys(CHANNELS, "pending")
    return Answered(rsvp, created=created, changed=True, notifications=pending)


class AnswerDesk(Protocol):
    """Where an answer is written: ``db.answers.RsvpAnswers``, in one round trip."""

    async def answer(self, request: AnswerRequest) -> StoredAnswer: ...


async def answer_rsvp(
    desk: AnswerDesk,
    cache: EventCache,
    *,
    event_id: uuid.UUID,
    caller_id: uuid.UUID,
    answer: Answer,
    idempotency: IdempotencyKey | None = None,
    correlation_id: uuid.UUID | None = None,
    received_at: float | None = None,
) -> Reply:
    """Answer for the caller, committed; the reply is stored with the key to be shown again.

    The desk applies ``stage_answer``'s rules in the database, in one statement
    (migration 0007), and renders the reply there so it can store it with the
    key in the same commit. A repeated key gets the first reply again and
    writes nothing; the same key with a different request is refused. A request
    ``received_at`` too long ago is refused as ``Overloaded`` before it writes.
    """
    request = AnswerRequest(
        user_id=caller_id,
        event_id=event_id,
        status=answer.status,
        guests=answer.guests,
        key=idempotency.key if idempotency else None,
        fingerprint=idempotency.fingerprint if idempotency else None,
        correlation_id=correlation_id,
        received_at=received_at,
    )
    stored = await desk.answer(request)
    if stored.outcome == "no_account":
        raise AccountGone()
    if stored.outcome == "no_event":
        raise NotFound("event")
    if stored.outcome == "key_reused":
        raise IdempotencyKeyReused()
    assert stored.body is not None
    if stored.changed:
        # after the commit, so a reader cannot cache the old counts again in between
        await cache.invalidate(event_id)
    return Reply(stored.status_code, stored.body, replayed=stored.outcome == "replayed")


async def cancel_rsvp(
    uow: UnitOfWork,
    cache: EventCache,
    *,
    event_id: uuid.UUID,
    caller_id: uuid.UUID,
    correlation_id: uuid.UUID | None = None,
) -> Answered:
    """Withdraw the caller's RSVP; publishes ``rsvp.cancelled``."""
    user = await account_of(uow, caller_id)
    event = await uow.events.with_organizer(event_id)
    if event is None:
        raise NotFound("event")
    existing = await uow.rsvps.lock_for_user(event_id, caller_id)
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
    await uow.commit()
    await cache.invalidate(event_id)
    pending = dict.fromkeys(CHANNELS, "pending")
    return Answered(rsvp, created=False, changed=True, notifications=pending)


async def rsvp_with_notifications(
    uow: UnitOfWork, *, rsvp_id: uuid.UUID, caller: Caller
) -> Answered:
    """An RSVP and how far its confirmation got, for its owner or the event's organizer."""
    row = await uow.rsvps.get(rsvp_id)
    if row is None:
        raise NotFound("RSVP")
    if caller.user_id not in (row["user_id"], row["organizer_id"]) and not caller.is_admin:
        raise NotYours("not your RSVP")
    stored = await uow.notifications.for_rsvp(rsvp_id)
    notifications = {channel: stored.get(channel, "pending") for channel in CHANNELS}
    return Answered(row, created=False, changed=False, notifications=notifications)


async def rsvps_of_event(
    uow: UnitOfWork,
    *,
    event_id: uuid.UUID,
    caller: Caller,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> Sequence[RowMapping]:
    """Who answered, in keyset order: the organizer's (or an admin's) view."""
    event = await uow.events.get(event_id)
    if event is None:
        raise NotFound("event")
    if event["organizer_id"] != caller.user_id and not caller.is_admin:
        raise NotYours("only the organizer sees RSVPs")
    return await uow.rsvps.page(event_id, limit=limit, status=status, after=after)
