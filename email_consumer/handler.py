"""What the email consumer does with a message: one email, then an ``email.sent``.

Plain async functions of typed messages. They say what went wrong by raising
TransientError or PermanentError (the renderer and the mailer already map
their failures onto those); the shared runtime decides retry or dead-letter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from email_consumer.mailer import Mailer, OutgoingEmail
from email_consumer.render import Renderer
from shared.messaging.errors import MessagingError, PermanentError
from shared.schemas import (
    DeliveryFailedPayload,
    EmailFailed,
    EmailSend,
    EmailSent,
    EmailSentPayload,
    Envelope,
    NotificationCommand,
    RsvpCancelled,
    RsvpCreated,
    RsvpPayload,
    RsvpUpdated,
)

PRODUCER = "email_consumer"


def outcome_fields(message: Envelope[Any]) -> dict[str, Any]:
    """What every follow-up says about the message it reports on."""
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
            "announcement_id": data.announcement_id,
        }
    raise PermanentError(f"no delivery to report for {message.type}", reason="unexpected_type")


class EmailHandlers:
    """The email consumer's handlers, bound to a renderer and a mailer."""

    def __init__(self, renderer: Renderer, mailer: Mailer) -> None:
        self._renderer = renderer
        self._mailer = mailer

    async def on_rsvp_event(self, message: Envelope[Any]) -> Sequence[Envelope[Any]]:
        """``rsvp.created|updated|cancelled`` -> the attendee's confirmation."""
        if not isinstance(message, RsvpCreated | RsvpUpdated | RsvpCancelled):
            raise PermanentError(
                f"email.rsvp_events does not take {message.type}", reason="unexpected_type"
            )
        return await self._send(message, self._renderer.for_rsvp(message))

    async def on_command(self, message: Envelope[Any]) -> Sequence[Envelope[Any]]:
        """``email.send`` -> a confirmation again, a reminder or an announcement."""
        if not isinstance(message, EmailSend):
            raise PermanentError(
                f"email.commands does not take {message.type}", reason="unexpected_type"
            )
        return await self._send(message, self._renderer.for_command(message))

    async def _send(self, message: Envelope[Any], email: OutgoingEmail) -> Sequence[Envelope[Any]]:
        await self._mailer.send(email)
        payload = EmailSentPayload(
            **outcome_fields(message),
            recipient=email.recipients[0],
            smtp_message_id=email.message_id,
        )
        return [EmailSent.caused_by(message, payload, producer=PRODUCER)]


def email_failed(message: Envelope[Any], error: MessagingError) -> Sequence[Envelope[Any]]:
    """The follow-up for a message the runtime dead-letters: the calendar shows `failed`."""
    try:
        fields = outcome_fields(message)
    except PermanentError:
        return ()
    payload = DeliveryFailedPayload(**fields, reason=error.reason[:200], error=str(error)[:2000])
    return [EmailFailed.caused_by(message, payload, producer=PRODUCER)]
