"""Concrete message types and the one way to parse a body into one of them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from shared.schemas.envelope import Envelope
from shared.schemas.payloads import (
    DeliveryFailedPayload,
    EmailSentPayload,
    NotificationCommand,
    PushSentPayload,
    RsvpPayload,
    SubscriptionExpiredPayload,
)


class RsvpCreated(Envelope[RsvpPayload]):
    """Someone answered an event for the first time."""

    type: Literal["rsvp.created"] = "rsvp.created"


class RsvpUpdated(Envelope[RsvpPayload]):
    """Someone changed their answer (status or guests)."""

    type: Literal["rsvp.updated"] = "rsvp.updated"


class RsvpCancelled(Envelope[RsvpPayload]):
    """Someone withdrew their RSVP."""

    type: Literal["rsvp.cancelled"] = "rsvp.cancelled"


class EmailSend(Envelope[NotificationCommand]):
    """Command: send one email (confirmation again, reminder, announcement)."""

    type: Literal["email.send"] = "email.send"


class PushSend(Envelope[NotificationCommand]):
    """Command: send one Web Push notification to a user's subscriptions."""

    type: Literal["push.send"] = "push.send"


class EmailSent(Envelope[EmailSentPayload]):
    """Follow-up: the mail server accepted the email."""

    type: Literal["email.sent"] = "email.sent"


class EmailFailed(Envelope[DeliveryFailedPayload]):
    """Follow-up: the email could not be sent and was dead-lettered."""

    type: Literal["email.failed"] = "email.failed"


class PushSent(Envelope[PushSentPayload]):
    """Follow-up: the push went out to every subscription (or there were none)."""

    type: Literal["push.sent"] = "push.sent"


class PushFailed(Envelope[DeliveryFailedPayload]):
    """Follow-up: the push could not be sent and was dead-lettered."""

    type: Literal["push.failed"] = "push.failed"


class PushSubscriptionExpired(Envelope[SubscriptionExpiredPayload]):
    """Follow-up: the push service said a subscription is gone (404/410)."""

    type: Literal["push.subscription_expired"] = "push.subscription_expired"


def message_type(cls: type[Envelope[Any]]) -> str:
    """The wire ``type`` of a message class, e.g. ``"rsvp.created"``."""
    value = cls.model_fields["type"].default
    if not isinstance(value, str):
        raise TypeError(f"{cls.__name__} has no default for `type`")
    return value


RsvpMessage = RsvpCreated | RsvpUpdated | RsvpCancelled
CommandMessage = EmailSend | PushSend
FollowUpMessage = EmailSent | EmailFailed | PushSent | PushFailed | PushSubscriptionExpired
AnyMessage = Annotated[
    RsvpMessage | CommandMessage | FollowUpMessage,
    Field(discriminator="type"),
]

MESSAGE_TYPES: dict[str, type[Envelope[Any]]] = {
    message_type(cls): cls
    for cls in (
        RsvpCreated,
        RsvpUpdated,
        RsvpCancelled,
        EmailSend,
        PushSend,
        EmailSent,
        EmailFailed,
        PushSent,
        PushFailed,
        PushSubscriptionExpired,
    )
}

_ANY_MESSAGE: TypeAdapter[Envelope[Any]] = TypeAdapter(AnyMessage)


class InvalidMessage(ValueError):
    """A body that is not JSON, or not a valid envelope of a known type."""


def parse_message(body: bytes | str) -> Envelope[Any]:
    """Validate a raw body into its message class, or raise InvalidMessage."""
    try:
        return _ANY_MESSAGE.validate_json(body)
    except ValidationError as exc:
        raise InvalidMessage(_summarise(exc)) from exc


def _summarise(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
