"""Typed payloads (the ``data`` of an envelope), one model per meaning."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, WithJsonSchema

from shared.schemas.envelope import Payload

AttendanceStatus = Literal["going", "maybe", "declined", "cancelled"]
NotificationKind = Literal["confirmation", "reminder", "announcement"]
Channel = Literal["email", "push"]

#: An address as the calendar service accepted it (it validated it fully at
#: registration, with ``email-validator``). Messages re-check only its shape,
#: in pydantic-core's regex engine: the full check costs ~0.1 ms per address,
#: a fifth of the runtime's whole per-message budget, and says nothing new.
EmailAddress = Annotated[
    str,
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]


class EventSummary(Payload):
    """What a notification needs to say about the event, copied at send time."""

    event_id: UUID = Field(description="Id of the event in the calendar service.")
    title: str = Field(min_length=1, max_length=200, description="Title of the event.")
    starts_at: AwareDatetime = Field(description="When the event starts (with a UTC offset).")
    ends_at: AwareDatetime | None = Field(
        default=None, description="When the event ends, if the organizer said."
    )
    location: str | None = Field(default=None, max_length=300, description="Where it takes place.")
    organizer_name: str | None = Field(
        default=None, max_length=120, description="Display name of the organizer."
    )
    organizer_email: EmailAddress | None = Field(
        default=None, description="Email address of the organizer."
    )


class Attendee(Payload):
    """The person a message is about or addressed to."""

    user_id: UUID = Field(description="Id of the user in the calendar service.")
    email: EmailAddress = Field(description="Address notifications are sent to.")
    name: str = Field(min_length=1, max_length=120, description="Display name.")


class RsvpPayload(Payload):
    """An RSVP as it stands after a change (``rsvp.created|updated|cancelled``)."""

    rsvp_id: UUID = Field(description="Id of the RSVP in the calendar service.")
    event: EventSummary = Field(description="The event answered.")
    attendee: Attendee = Field(description="The person who answered.")
    status: AttendanceStatus = Field(description="The answer after this change.")
    previous_status: AttendanceStatus | None = Field(
        default=None, description="The answer before this change; null for a new RSVP."
    )
    guests: int = Field(
        default=0, ge=0, le=100, description="How many people the attendee brings along."
    )
    version: int = Field(
        ge=1,
        description=(
            "Increases with every change of this RSVP, so consumers can order "
            "changes that arrive out of order."
        ),
    )


class NotificationCommand(Payload):
    """A point-to-point request to notify one person on one channel."""

    kind: NotificationKind = Field(description="Why the person is notified.")
    recipient: Attendee = Field(description="Who is notified.")
    event: EventSummary = Field(description="The event the notification is about.")
    rsvp_id: UUID | None = Field(
        default=None, description="The RSVP concerned (confirmations and reminders)."
    )
    status: AttendanceStatus | None = Field(
        default=None, description="The recipient's answer, for a confirmation."
    )
    rsvp_version: int | None = Field(
        default=None,
        ge=1,
        description=(
            "version of the RSVP this confirmation restates, so its follow-up updates "
            "the RSVP's delivery status (confirmations)."
        ),
    )
    announcement_id: UUID | None = Field(
        default=None, description="The announcement sent (kind announcement)."
    )
    subject: str | None = Field(
        default=None, max_length=200, description="Subject line chosen by the sender, if any."
    )
    body: str | None = Field(
        default=None, max_length=5000, description="Text written by the organizer (announcements)."
    )
    remind_before_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For reminders: how long before the start this one is meant to arrive.",
    )


class DeliveryOutcome(Payload):
    """What every follow-up says about the message it reports on."""

    source_message_id: UUID = Field(description="message_id of the message that was delivered.")
    source_type: str = Field(description="type of that message, e.g. rsvp.created or email.send.")
    kind: NotificationKind = Field(description="Why the person was notified.")
    user_id: UUID = Field(description="The person notified.")
    event_id: UUID = Field(description="The event the notification was about.")
    rsvp_id: UUID | None = Field(default=None, description="The RSVP concerned, if any.")
    rsvp_version: int | None = Field(
        default=None, description="version of the RSVP the notification reported on."
    )
    announcement_id: UUID | None = Field(
        default=None, description="The announcement delivered, if any."
    )


class EmailSentPayload(DeliveryOutcome):
    """An email the mail server accepted."""

    recipient: EmailAddress = Field(description="Address the email was sent to.")
    smtp_message_id: str = Field(description="Message-ID of the email sent.")


class DeliveryFailedPayload(DeliveryOutcome):
    """A notification that was given up on and dead-lettered."""

    reason: str = Field(max_length=200, description="Short machine-readable cause of the failure.")
    error: str = Field(max_length=2000, description="What went wrong, for people.")


class PushSentPayload(DeliveryOutcome):
    """A Web Push notification delivered to the user's subscriptions."""

    status: Literal["sent", "skipped"] = Field(
        description="skipped when the user has no push subscription: not an error."
    )
    delivered: int = Field(ge=0, description="How many subscriptions accepted the push.")


class SubscriptionExpiredPayload(Payload):
    """A push subscription the push service no longer knows."""

    user_id: UUID = Field(description="Owner of the subscription.")
    subscription_id: UUID = Field(description="Id of the subscription in the calendar service.")
    endpoint: str = Field(max_length=2048, description="The push endpoint that answered.")
    status_code: int = Field(description="HTTP status the push service answered (404 or 410).")
    seen_at: AwareDatetime = Field(description="When the push service said so.")
