"""RSVPs: answer (idempotent), list an event's, cancel one's own, read with delivery status."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from pydantic import BaseModel, Field
from sqlalchemy.engine import RowMapping

from calendar_service.api.deps import (
    ContainerDep,
    CurrentUser,
    UowDep,
    current_correlation_id,
    require_account,
)
from calendar_service.api.pagination import decode_cursor, encode_cursor
from calendar_service.domain import Answer
from calendar_service.ratelimit import enforce
from calendar_service.services import (
    CHANNELS,
    NotFound,
    answer_rsvp,
    cancel_rsvp,
    resend_confirmation,
)

router = APIRouter(tags=["rsvps"])

DeliveryState = Literal["pending", "sent", "failed", "skipped"]


class RsvpIn(BaseModel):
    status: Literal["going", "maybe", "declined"]
    guests: int = Field(default=0, ge=0, le=20)


class RsvpOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    guests: int
    version: int
    created_at: datetime
    updated_at: datetime
    notifications: dict[str, DeliveryState] | None = None


class RsvpListItem(RsvpOut):
    user_name: str


class RsvpPage(BaseModel):
    items: list[RsvpListItem]
    next_cursor: str | None


def _out(row: RowMapping, notifications: dict[str, str] | None = None) -> RsvpOut:
    return RsvpOut.model_validate({**row, "notifications": notifications})


def _fingerprint(event_id: uuid.UUID, body: RsvpIn) -> str:
    return hashlib.sha256(f"{event_id}:{body.model_dump_json()}".encode()).hexdigest()


@router.post(
    "/events/{event_id}/rsvps",
    response_model=RsvpOut,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": RsvpOut, "description": "RSVP changed or unchanged"}},
)
async def answer(
    event_id: uuid.UUID,
    body: RsvpIn,
    caller: CurrentUser,
    uow: UowDep,
    container: ContainerDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Response:
    """Create or change the caller's RSVP: 201 for a new answer, 200 for a change.

    With an `Idempotency-Key`, a repeated request gets the first response again
    and writes nothing; the same key with a different body is a 422.
    """
    user = await require_account(uow, caller)
    if idempotency_key is not None:
        fingerprint = _fingerprint(event_id, body)
        earlier = await uow.idempotency.claim(caller.user_id, idempotency_key, fingerprint)
        if earlier is not None:
            if earlier["request_fingerprint"] != fingerprint:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    detail="Idempotency-Key was already used with a different request",
                )
            return Response(
                earlier["response_body"],
                status_code=earlier["status_code"],
                media_type="application/json",
                headers={"idempotent-replayed": "true"},
            )

    result = await answer_rsvp(
        uow,
        event_id=event_id,
        user=user,
        answer=Answer(body.status, body.guests),
        correlation_id=current_correlation_id(),
    )
    notifications = dict.fromkeys(CHANNELS, "pending") if result.changed else None
    if notifications is None:
        notifications = await uow.deliveries.for_rsvp(result.rsvp["id"])
    payload = _out(result.rsvp, notifications).model_dump_json().encode()
    status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    if idempotency_key is not None:
        await uow.idempotency.store_response(caller.user_id, idempotency_key, status_code, payload)
    await uow.commit()
    if result.changed:
        await container.cache.invalidate(event_id)
    return Response(payload, status_code=status_code, media_type="application/json")


@router.get("/events/{event_id}/rsvps", response_model=RsvpPage)
async def list_rsvps(
    event_id: uuid.UUID,
    caller: CurrentUser,
    uow: UowDep,
    status_filter: Annotated[
        Literal["going", "maybe", "declined", "cancelled"] | None, Query(alias="status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RsvpPage:
    """The organizer's (or an admin's) view of who answered."""
    event = await uow.events.get(event_id)
    if event is None:
        raise NotFound("event")
    if event["organizer_id"] != caller.user_id and not caller.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only the organizer sees RSVPs")
    rows = await uow.rsvps.page(
        event_id, limit=limit + 1, status=status_filter, after=decode_cursor(cursor)
    )
    items = [RsvpListItem.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if more else None
    return RsvpPage(items=items, next_cursor=next_cursor)


@router.delete("/events/{event_id}/rsvps/me", response_model=RsvpOut)
async def cancel(
    event_id: uuid.UUID, caller: CurrentUser, uow: UowDep, container: ContainerDep
) -> RsvpOut:
    """Withdraw the caller's RSVP; publishes `rsvp.cancelled`."""
    user = await require_account(uow, caller)
    row = await cancel_rsvp(
        uow, event_id=event_id, user=user, correlation_id=current_correlation_id()
    )
    await uow.commit()
    await container.cache.invalidate(event_id)
    return _out(row, dict.fromkeys(CHANNELS, "pending"))


@router.get("/rsvps/{rsvp_id}", response_model=RsvpOut)
async def get_rsvp(rsvp_id: uuid.UUID, caller: CurrentUser, uow: UowDep) -> RsvpOut:
    """An RSVP with its notification status, for its owner or the event's organizer."""
    row = await uow.rsvps.get(rsvp_id)
    if row is None:
        raise NotFound("RSVP")
    if caller.user_id not in (row["user_id"], row["organizer_id"]) and not caller.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not your RSVP")
    notifications = await uow.deliveries.for_rsvp(rsvp_id)
    return _out(row, {c: notifications.get(c, "pending") for c in CHANNELS})


class CommandAccepted(BaseModel):
    command_id: uuid.UUID
    rsvp_id: uuid.UUID
    channel: Literal["email", "push"]


@router.post(
    "/rsvps/{rsvp_id}/resend",
    response_model=CommandAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={429: {"description": "resent too often; see Retry-After"}},
)
async def resend(
    rsvp_id: uuid.UUID, caller: CurrentUser, uow: UowDep, container: ContainerDep
) -> CommandAccepted:
    """Send the caller their confirmation again; the email status goes back to pending.

    Limited per RSVP (`RESEND_LIMIT`, default 3 an hour) across all replicas.
    """
    user = await require_account(uow, caller)
    row = await uow.rsvps.get(rsvp_id)
    if row is None:
        raise NotFound("RSVP")
    if row["user_id"] != caller.user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="not your RSVP")
    await enforce(
        container.limiter,
        container.resend_limit,
        "resend",
        str(rsvp_id),
        what="confirmation resent",
        shown=container.settings.resend_limit,
    )
    command = await resend_confirmation(
        uow, rsvp=row, user=user, correlation_id=current_correlation_id()
    )
    await uow.commit()
    return CommandAccepted(command_id=command.message_id, rsvp_id=rsvp_id, channel="email")
