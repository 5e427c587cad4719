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
from shared.messaging.errors import MessagingError
from shared.messaging.outcomes import failure_report, outcome_fields
from shared.schemas import (
    EmailFailed,
    EmailSend,
    EmailSent,
    EmailSentPayload,
    Envelope,
    RsvpMessage,
)

#: Everything the email consumer takes: what its two queues carry.
EmailSource = RsvpMessage | EmailSend

PRODUCER = "email_consumer"


class EmailHandlers:
    """The email consumer's handlers, bound to a renderer and a mailer."""

    def __init__(self, renderer: Renderer, mailer: Mailer) -> None:
        self._renderer = renderer
        self._mailer = mailer

    async def on_rsvp_event(self, message: RsvpMessage) -> Sequence[Envelope[Any]]:
        """``rsvp.created|updated|cancelled`` -> the attendee's confirmation."""
        return await self._send(message, self._renderer.for_rsvp(message))

    async def on_command(self, message: EmailSend) -> Sequence[Envelope[Any]]:
        """``email.send`` -> a confirmation again, a reminder or an announcement."""
        return await self._send(message, self._renderer.for_command(message))

    async def _send(self, message: EmailSource, email: OutgoingEmail) -> Sequence[Envelope[Any]]:
        await self._mailer.send(email)
        payload = EmailSentPayload(
            **outcome_fields(message),
            recipient=email.recipients[0],
            smtp_message_id=email.message_id,
        )
        return [EmailSent.caused_by(message, payload, producer=PRODUCER)]


def email_failed(message: EmailSource, error: MessagingError) -> Sequence[Envelope[Any]]:
    """The follow-up for a message the runtime dead-letters: the calendar shows `failed`."""
    return [EmailFailed.caused_by(message, failure_report(message, error), producer=PRODUCER)]
