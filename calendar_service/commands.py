"""The point-to-point commands the calendar service sends: one person, one channel.

Three producers write them through the outbox to ``notify.direct`` (routing
key = the channel's command queue): a resent confirmation (API), reminders
(scheduler) and announcements (API, fanned out by the scheduler).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from shared.schemas import (
    Attendee,
    EmailSend,
    Envelope,
    EventSummary,
    NotificationCommand,
    PushSend,
)

PRODUCER = "calendar_service"
COMMANDS: Mapping[str, type[EmailSend] | type[PushSend]] = {"email": EmailSend, "push": PushSend}

#: Names the deterministic ids of scheduled commands (uuid5 within it).
COMMAND_NAMESPACE = uuid.UUID("6f0c5d2e-8c57-4d1e-9a43-2b1f3f6a8e01")


def event_summary(event: Mapping[Any, Any], *, event_id: uuid.UUID | None = None) -> EventSummary:
    """The event as a message tells it; ``event`` is a row with the organizer joined."""
    return EventSummary(
        event_id=event_id or event["id"],
        title=event["title"],
        starts_at=event["starts_at"],
        ends_at=event["ends_at"],
        location=event["location"],
        organizer_name=event.get("organizer_name"),
        organizer_email=event.get("organizer_email"),
    )


def attendee(row: Mapping[Any, Any], *, user_key: str = "id") -> Attendee:
    return Attendee(user_id=row[user_key], email=row["email"], name=row["name"])


def commands_for(
    payload: NotificationCommand,
    channels: Sequence[str],
    *,
    correlation_id: uuid.UUID | None,
    key: str | None = None,
) -> list[Envelope[Any]]:
    """One command per channel. With ``key``, message ids are derived from it (uuid5),
    so whatever writes the same command twice writes the same message twice, which
    the outbox's unique message id and the consumers' inbox both refuse."""
    messages: list[Envelope[Any]] = []
    for channel in channels:
        message_id = uuid.uuid5(COMMAND_NAMESPACE, f"{key}:{channel}") if key else None
        messages.append(
            COMMANDS[channel].first(
                payload, producer=PRODUCER, correlation_id=correlation_id, message_id=message_id
            )
        )
    return messages
