"""Sample messages for tests: valid envelopes with random identities."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from aio_pika.abc import AbstractIncomingMessage

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


def _as_json(message: RsvpCreated, **changes: object) -> bytes:
    """``message``'s JSON with fields changed (None removes one)."""
    fields = json.loads(message.model_dump_json())
    for name, value in changes.items():
        if value is None:
            fields.pop(name)
        else:
            fields[name] = value
    return json.dumps(fields).encode()


#: Deliveries a consumer must dead-letter with a reason and go on (design §6):
#: (body, a word of the complaint, content type).
MALFORMED: list[tuple[bytes, str, str | None]] = [
    (b"<html>not json</html>", "json", None),
    (b'{"type": "rsvp.created", "producer": "tests", "data": {}}', "field required", None),
    (_as_json(rsvp_created(), message_id=None), "message_id", None),
    (_as_json(rsvp_created(), type="rsvp.exploded"), "rsvp.exploded", None),
    (_as_json(rsvp_created(), schema_version=99), "newer than this consumer", None),
    (b'{"pad": "' + b"x" * 10_000_000 + b'"}', "discriminator", None),
    (rsvp_created().model_dump_json().encode(), "content type", "text/plain"),
]
MALFORMED_IDS = [
    "non-json",
    "schema-invalid",
    "no-message-id",
    "unknown-type",
    "future-schema-version",
    "ten-megabytes",
    "wrong-content-type",
]


def assert_dead_lettered_as_invalid(
    dead: AbstractIncomingMessage | None,
    *,
    message_id: str,
    body: bytes,
    complaint: str,
    queue: str,
) -> None:
    """``dead`` is the malformed delivery, unchanged, with the runtime's invalid-message headers."""
    assert dead is not None
    assert dead.message_id == message_id
    assert dead.body == body
    assert dead.headers["x-fault-reason"] == "invalid_message"
    assert dead.headers["x-exception-type"] == "InvalidMessageError"
    assert complaint in str(dead.headers["x-exception-message"]).lower()
    assert dead.headers["x-original-queue"] == queue
