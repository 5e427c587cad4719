"""RSVPs: answer (idempotent), list an event's, cancel one's own, read with notification status."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import BaseModel, Field

from calendar_service.api.admission import admitted_at
from calendar_service.api.deps import (
    CacheDep,
    ContainerDep,
    CurrentUser,
    ResendQuota,
    RsvpChanger,
    UowDep,
    current_correlation_id,
)
from calendar_service.api.errors import merged, refusals
from calendar_service.api.fields import Count
from calendar_service.api.lagging_reads import LaggingReads, on_replica_or_primary
from calendar_service.api.pagination import (
    CURSOR_PATTERN,
    INVALID_CURSOR,
    decode_cursor,
    encode_cursor,
)
from calendar_service.domain import Answer
from calendar_service.errors import (
    EventFull,
    IdempotencyKeyReused,
    LimiterUnavailable,
    NotFound,
    NothingToCancel,
    NotYours,
    Overloaded,
    RateLimited,
)
from calendar_service.usecases.confirmations import resend_confirmation
from calendar_service.usecases.rsvps import (
    Answered,
    IdempotencyKey,
    answer_rsvp,
    cancel_rsvp,
    rsvp_with_notifications,
    rsvps_of_event,
)

router = APIRouter(tags=["rsvps"], responses=refusals(Overloaded))

NotificationState = Literal["pending", "sent", "failed", "skipped"]


class RsvpIn(BaseModel):
    status: Literal["going", "maybe", "declined"]
    guests: Count = Field(default=0, ge=0, le=20)


class RsvpOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    guests: int
    version: int
    created_at: datetime
    updated_at: datetime
    notifications: dict[str, NotificationState] | None = None


class RsvpListItem(RsvpOut):
    user_name: str


class RsvpPage(BaseModel):
    items: list[RsvpListItem]
    next_cursor: str | None


def _out(answered: Answered) -> RsvpOut:
    return RsvpOut.model_validate({**answered.rsvp, "notifications": answered.notifications})


def fingerprint(event_id: uuid.UUID, body: RsvpIn) -> str:
    """What tells a repeated request from another one under the same Idempotency-Key.

    The text is ``body.model_dump_json()``'s, written out (a status word and an
    int need no escaping) because serializing the model costs more than the hash;
    stored fingerprints must not change (tests/unit/calendar/test_rsvp_fingerprint.py).
    """
    text = f'{event_id}:{{"status":"{body.status}","guests":{body.guests}}}'
    return hashlib.sha256(text.encode()).hexdigest()


@router.post(
    "/events/{event_id}/rsvps",
    response_model=RsvpOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": RsvpOut, "description": "RSVP changed or unchanged"},
        **refusals(NotFound, EventFull, IdempotencyKeyReused, RateLimited, Overloaded),
    },
)
async def answer(
    event_id: uuid.UUID,
    body: RsvpIn,
    caller: RsvpChanger,
    container: ContainerDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=200,
            description="Any string: a repeat with the same key and body gets the first answer.",
        ),
    ] = None,
) -> Response:
    """Create or change the caller's RSVP: 201 for a new answer, 200 for a change.

    With an `Idempotency-Key`, a repeated request gets the first response again
    and writes nothing; the same key with a different body is a 422.
    """
    idempotency = None
    if idempotency_key is not None:
        idempotency = IdempotencyKey(idempotency_key, fingerprint(event_id, body))
    # the container itself, not a dependency each for the desk and the cache: fewer to solve
    reply = await answer_rsvp(
        container.answers,
        container.cache,
        event_id=event_id,
        caller_id=caller.user_id,
        answer=Answer(body.status, body.guests),
        idempotency=idempotency,
        correlation_id=current_correlation_id(),
        received_at=admitted_at(),
    )
    return Response(
        reply.body,
        status_code=reply.status_code,
        media_type="application/json",
        headers={"idempotent-replayed": "true"} if reply.replayed else None,
    )


@router.get(
    "/events/{event_id}/rsvps",
    response_model=RsvpPage,
    responses=merged(INVALID_CURSOR, refusals(NotYours, NotFound, Overloaded)),
)
async def list_rsvps(
    event_id: uuid.UUID,
    caller: CurrentUser,
    reads: LaggingReads,
    container: ContainerDep,
    status_filter: Annotated[
        Literal["going", "maybe", "declined", "cancelled"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, json_schema_extra={"pattern": CURSOR_PATTERN})
    ] = None,
) -> RsvpPage:
    """The organizer's (or an admin's) view of who answered (from the replica, when set)."""
    after = decode_cursor(cursor)
    rows = await on_replica_or_primary(
        container,
        reads,
        lambda uow: rsvps_of_event(
            uow,
            event_id=event_id,
            caller=caller,
            status=status_filter,
            limit=limit + 1,
            after=after,
        ),
    )
    items = [RsvpListItem.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
    return RsvpPage(items=items, next_cursor=next_cursor)


@router.delete(
    "/events/{event_id}/rsvps/me",
    response_model=RsvpOut,
    responses=refusals(NotFound, NothingToCancel, RateLimited, Overloaded),
)
async def cancel(event_id: uuid.UUID, caller: RsvpChanger, uow: UowDep, cache: CacheDep) -> RsvpOut:
    """Withdraw the caller's RSVP; publishes `rsvp.cancelled`."""
    cancelled = await cancel_rsvp(
        uow,
        cache,
        event_id=event_id,
        caller_id=caller.user_id,
        correlation_id=current_correlation_id(),
    )
    return _out(cancelled)


@router.get("/rsvps/{rsvp_id}", response_model=RsvpOut, responses=refusals(NotYours, NotFound))
async def get_rsvp(rsvp_id: uuid.UUID, caller: CurrentUser, uow: UowDep) -> RsvpOut:
    """An RSVP with its notification status, for its owner or the event's organizer."""
    return _out(await rsvp_with_notifications(uow, rsvp_id=rsvp_id, caller=caller))


class CommandAccepted(BaseModel):
    command_id: uuid.UUID
    rsvp_id: uuid.UUID
    channel: Literal["email", "push"]


@router.post(
    "/rsvps/{rsvp_id}/resend",
    response_model=CommandAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=refusals(NotYours, NotFound, RateLimited, LimiterUnavailable, Overloaded),
)
async def resend(
    rsvp_id: uuid.UUID, caller: CurrentUser, uow: UowDep, quota: ResendQuota
) -> CommandAccepted:
    """Send the caller their confirmation again; the email status goes back to pending.

    Limited per RSVP (`RESEND_LIMIT`, default 3 an hour) across all replicas.
    """
    command = await resend_confirmation(
        uow,
        quota,
        rsvp_id=rsvp_id,
        caller_id=caller.user_id,
        correlation_id=current_correlation_id(),
    )
    return CommandAccepted(command_id=command.message_id, rsvp_id=rsvp_id, channel="email")
