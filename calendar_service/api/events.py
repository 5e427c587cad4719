"""Events: create, list (keyset pages), read with RSVP counts (cached)."""

from __future__ import annotations

import uuid
from contextlib import suppress
from datetime import datetime
from typing import Annotated, Self

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.engine import RowMapping

from calendar_service.api.deps import CacheDep, ContainerDep, CurrentUser, UowDep
from calendar_service.api.errors import refusals
from calendar_service.api.fields import Capacity, PlainText, UtcDateTime
from calendar_service.api.lagging_reads import LaggingReads, read_lagging
from calendar_service.api.pagination import (
    CURSOR_PATTERN,
    INVALID_CURSOR,
    decode_cursor,
    encode_cursor,
)
from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import (
    CapacityBelowSeatsTaken,
    EndsBeforeStart,
    NotFound,
    NotYours,
    Overloaded,
)
from calendar_service.usecases import events as event_usecases

router = APIRouter(prefix="/events", tags=["events"], responses=refusals(Overloaded))


class EventIn(BaseModel):
    title: PlainText = Field(min_length=1, max_length=200)
    starts_at: UtcDateTime
    ends_at: UtcDateTime | None = None
    location: PlainText | None = Field(default=None, max_length=300)
    capacity: Capacity | None = None

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> Self:
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise ValueError("ends_at must not be before starts_at")
        return self


class EventPatch(BaseModel):
    """The fields to change; those left out keep their value, ``null`` clears an optional one."""

    # null is refused for these two (the validator below); the document says so
    title: Annotated[PlainText, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    starts_at: UtcDateTime | SkipJsonSchema[None] = None
    ends_at: UtcDateTime | None = None
    location: PlainText | None = Field(default=None, max_length=300)
    capacity: Capacity | None = None

    @model_validator(mode="after")
    def _required_fields_stay_set(self) -> Self:
        for name in ("title", "starts_at"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be cleared")
        return self


class RsvpCounts(BaseModel):
    going: int
    maybe: int
    declined: int
    seats_taken: int
    seats_left: int | None


class EventOut(BaseModel):
    id: uuid.UUID
    organizer_id: uuid.UUID
    title: str
    starts_at: datetime
    ends_at: datetime | None
    location: str | None
    capacity: int | None
    created_at: datetime


class EventDetail(EventOut):
    rsvp_counts: RsvpCounts


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


def _detail(row: RowMapping) -> EventDetail:
    capacity = row["capacity"]
    return EventDetail.model_validate(
        {
            **row,
            "rsvp_counts": {
                "going": row["going_count"],
                "maybe": row["maybe_count"],
                "declined": row["declined_count"],
                "seats_taken": row["going_seats"],
                "seats_left": None if capacity is None else capacity - row["going_seats"],
            },
        }
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=EventDetail)
async def create_event(body: EventIn, caller: CurrentUser, uow: UowDep) -> EventDetail:
    row = await event_usecases.create_event(
        uow, organizer_id=caller.user_id, fields=body.model_dump()
    )
    return _detail(row)


@router.patch(
    "/{event_id}",
    response_model=EventDetail,
    responses=refusals(NotYours, NotFound, CapacityBelowSeatsTaken, EndsBeforeStart, Overloaded),
)
async def change_event(
    event_id: uuid.UUID, body: EventPatch, caller: CurrentUser, uow: UowDep, cache: CacheDep
) -> EventDetail:
    """Change an event (organizer only). Moving its start moves its pending reminders."""
    row = await event_usecases.change_event(
        uow,
        cache,
        event_id=event_id,
        caller_id=caller.user_id,
        changes=body.model_dump(exclude_unset=True),
    )
    return _detail(row)


@router.get("", response_model=EventPage, responses=INVALID_CURSOR)
async def list_events(
    reads: LaggingReads,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None, Query(max_length=200, json_schema_extra={"pattern": CURSOR_PATTERN})
    ] = None,
) -> EventPage:
    rows = await reads.events.page(limit=limit + 1, after=decode_cursor(cursor))
    items = [EventOut.model_validate(dict(r)) for r in rows[:limit]]
    more = len(rows) > limit
    next_cursor = encode_cursor(items[-1].starts_at, items[-1].id) if more else None
    return EventPage(items=items, next_cursor=next_cursor)


@router.get("/{event_id}", response_model=EventDetail, responses=refusals(NotFound, Overloaded))
async def get_event(event_id: uuid.UUID, container: ContainerDep, cache: CacheDep) -> Response:
    """The event with its RSVP counts; a miss is rebuilt once however many read it meanwhile.

    No unit of work as a dependency: a hit needs no database connection, and
    readers waiting on a rebuild must not hold pool connections meanwhile.
    With a read replica the page is read there (its counts may lag a moment),
    except after a write within the cache's TTL (``cache.WRITTEN_LATELY``) and
    for an event the replica has not replayed yet: those read the primary.
    """

    async def page(uow: UnitOfWork) -> bytes:
        row = await uow.events.get(event_id)
        if row is None:
            raise NotFound("event")
        return _detail(row).model_dump_json().encode()

    async def from_primary() -> bytes | None:
        async with UnitOfWork(container.engine, read_only=True) as uow:
            with suppress(NotFound):
                return await page(uow)
        return None

    async def from_replica() -> bytes | None:
        with suppress(NotFound):
            return await read_lagging(container, page)
        return None

    if container.has_read_replica:
        body, hit = await cache.read_through(event_id, from_replica, primary=from_primary)
    else:
        body, hit = await cache.read_through(event_id, from_primary)
    if body is None:
        raise NotFound("event")
    return Response(
        body, media_type="application/json", headers={"x-cache": "hit" if hit else "miss"}
    )
