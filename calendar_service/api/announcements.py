"""Announcements: the organizer messages everyone going, by email and/or push."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, status
from pydantic import AfterValidator, BaseModel, Field

from calendar_service.api.deps import (
    AnnouncementQuota,
    ContainerDep,
    CurrentUser,
    UowDep,
    current_correlation_id,
)
from calendar_service.api.errors import refusals
from calendar_service.api.fields import MultilineText, PlainText
from calendar_service.api.lagging_reads import LaggingReads, on_replica_or_primary
from calendar_service.errors import LimiterUnavailable, NotFound, NotYours, Overloaded, RateLimited
from calendar_service.usecases.announcements import announcement_progress, post_announcement

router = APIRouter(
    prefix="/events/{event_id}/announcements",
    tags=["announcements"],
    responses=refusals(NotYours, NotFound, Overloaded),
)

Channel = Literal["email", "push"]
RecipientState = Literal["queued", "sent", "failed", "skipped"]


def _distinct(channels: list[Channel]) -> list[Channel]:
    if len(set(channels)) != len(channels):
        raise ValueError("each channel may be named once")
    return channels


class AnnouncementIn(BaseModel):
    subject: PlainText = Field(min_length=1, max_length=200)
    body: MultilineText = Field(min_length=1, max_length=5000)
    channels: Annotated[list[Channel], AfterValidator(_distinct)] = Field(
        default=["email", "push"],
        min_length=1,
        max_length=2,
        json_schema_extra={"uniqueItems": True},
    )


class AnnouncementAccepted(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    channels: list[Channel]


class AnnouncementOut(AnnouncementAccepted):
    subject: str
    created_at: datetime
    #: false while the scheduler is still queueing recipients
    fanned_out: bool
    recipients: int
    #: per channel: recipients queued (no report yet), sent, failed, skipped
    counts: dict[Channel, dict[RecipientState, int]]


@router.post(
    "",
    response_model=AnnouncementAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=refusals(NotYours, NotFound, RateLimited, LimiterUnavailable, Overloaded),
)
async def announce(
    event_id: uuid.UUID,
    body: AnnouncementIn,
    caller: CurrentUser,
    uow: UowDep,
    quota: AnnouncementQuota,
) -> AnnouncementAccepted:
    """Message every attendee who is going; returns at once, the scheduler fans out.

    Limited per event (`ANNOUNCEMENT_LIMIT`, default 10 an hour): each post
    fans out to every attendee.
    """
    row = await post_announcement(
        uow,
        quota,
        event_id=event_id,
        caller_id=caller.user_id,
        subject=body.subject,
        body=body.body,
        channels=body.channels,
        correlation_id=current_correlation_id() or uuid.uuid4(),
    )
    return AnnouncementAccepted.model_validate(dict(row))


@router.get("/{announcement_id}", response_model=AnnouncementOut)
async def progress(
    event_id: uuid.UUID,
    announcement_id: uuid.UUID,
    caller: CurrentUser,
    reads: LaggingReads,
    container: ContainerDep,
) -> AnnouncementOut:
    """How far an announcement has got, from the consumers' follow-ups (organizer only).

    Read from the replica when there is one: counts a moment behind are fine.
    """
    row, stored = await on_replica_or_primary(
        container,
        reads,
        lambda uow: announcement_progress(
            uow, event_id=event_id, announcement_id=announcement_id, caller=caller
        ),
    )
    counts: dict[Channel, dict[RecipientState, int]] = {
        channel: {
            state: stored.get(channel, {}).get(state, 0)
            for state in ("queued", "sent", "failed", "skipped")
        }
        for channel in row["channels"]
    }
    return AnnouncementOut.model_validate(
        {**row, "fanned_out": row["fanned_out_at"] is not None, "counts": counts}
    )
