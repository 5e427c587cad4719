"""Sample messages for tests: valid envelopes with random identities."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from shared.schemas import (
    Attendee,
    EmailSend,
    EventSummary,
    NotificationCommand,
    NotificationKind,
    RsvpCreated,
    RsvpPayload,
)


def rsvp_created(*, email: str | None = None, name: str = "Grace Hopper") -> RsvpCreated:
    event = EventSummary(
        event_id=uuid.uuid4(),
        title="Compiler meetup",
        starts_at=datetime.now(UTC) + timedelta(days=3),
        ends_at=datetime.now(UTC) + timedelta(days=3, hours=2),
        location="Room 101",
        organizer_name="Organizer",
        organizer_email="organizer@example.com",
    )
    attendee = Attendee(
        user_id=uuid.uuid4(), email=email or f"{uuid.uuid4().hex[:8]}@example.com", name=name
    )
    payload = RsvpPayload(
        rsvp_id=uuid.uuid4(), event=event, attendee=attendee, status="going", version=1
    )
    return RsvpCreated.first(payload, producer="tests")


def email_send(kind: NotificationKind = "confirmation") -> EmailSend:
    created = rsvp_created()
    command = NotificationCommand(
        kind=kind,
        recipient=created.data.attendee,
        event=created.data.event,
        rsvp_id=created.data.rsvp_id,
        status="going",
    )
    return EmailSend.first(command, producer="tests")
