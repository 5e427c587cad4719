"""What a notification's follow-up says about the message it reports on, for every consumer.

The email and push consumers report on the same two kinds of message (an
RSVP event, a notification command) with the same fields; only the
follow-up type and its extra fields differ, and those stay in each handler.
"""

from __future__ import annotations

from typing import Any

from shared.messaging.errors import MessagingError
from shared.schemas import CommandMessage, DeliveryFailedPayload, RsvpMessage, RsvpPayload

#: What a notification consumer takes and reports on: an RSVP event or a command.
NotificationSource = RsvpMessage | CommandMessage


def outcome_fields(message: NotificationSource) -> dict[str, Any]:
    """The ``DeliveryOutcome`` fields of a follow-up about ``message``."""
    data = message.data
    common: dict[str, Any] = {
        "source_message_id": message.message_id,
        "source_type": message.type,
    }
    if isinstance(data, RsvpPayload):
        return {
            **common,
            "kind": "confirmation",
            "user_id": data.attendee.user_id,
            "event_id": data.event.event_id,
            "rsvp_id": data.rsvp_id,
            "rsvp_version": data.version,
        }
    return {
        **common,
        "kind": data.kind,
        "user_id": data.recipient.user_id,
        "event_id": data.event.event_id,
        "rsvp_id": data.rsvp_id,
        "rsvp_version": data.rsvp_version,
        "announcement_id": data.announcement_id,
    }


def failure_report(message: NotificationSource, error: MessagingError) -> DeliveryFailedPayload:
    """The payload of an ``email.failed`` / ``push.failed`` for a dead-lettered ``message``."""
    fields = outcome_fields(message)
    return DeliveryFailedPayload(**fields, reason=error.reason[:200], error=str(error)[:2000])
