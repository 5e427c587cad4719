"""What a delivery follow-up says about the message it reports on, for every consumer.

The email and push consumers report on the same two kinds of message (an
RSVP event, a notification command) with the same fields; only the
follow-up type and its extra fields differ, and those stay in each handler.
"""

from __future__ import annotations

from typing import Any

from shared.messaging.errors import MessagingError, PermanentError
from shared.schemas import DeliveryFailedPayload, Envelope, NotificationCommand, RsvpPayload


def outcome_fields(message: Envelope[Any]) -> dict[str, Any]:
    """The ``DeliveryOutcome`` fields of a follow-up about ``message``.

    Raises PermanentError for a message that is neither an RSVP event nor a
    notification command: there is no delivery to report on.
    """
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
    if isinstance(data, NotificationCommand):
        return {
            **common,
            "kind": data.kind,
            "user_id": data.recipient.user_id,
            "event_id": data.event.event_id,
            "rsvp_id": data.rsvp_id,
            "rsvp_version": data.rsvp_version,
            "announcement_id": data.announcement_id,
        }
    raise PermanentError(f"no delivery to report for {message.type}", reason="unexpected_type")


def delivery_failure(message: Envelope[Any], error: MessagingError) -> DeliveryFailedPayload | None:
    """The payload of an ``email.failed`` / ``push.failed`` for a dead-lettered ``message``.

    None when the message reports on no delivery (it had an unexpected type).
    """
    try:
        fields = outcome_fields(message)
    except PermanentError:
        return None
    return DeliveryFailedPayload(**fields, reason=error.reason[:200], error=str(error)[:2000])
