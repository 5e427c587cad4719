"""What a push says: the JSON a service worker's ``push`` handler shows as a notification."""

from __future__ import annotations

from uuid import UUID

import orjson
from pydantic import BaseModel

from push_consumer.webpush import Urgency
from shared.messaging.errors import PermanentError
from shared.schemas import PushSend, RsvpMessage, RsvpPayload

#: Notifications show a few lines; this also keeps the payload far below 4 kB in UTF-8.
_BODY_LIMIT = 600

_RSVP_TITLES = {
    "going": "You're going to {title}",
    "maybe": "You might go to {title}",
    "declined": "You declined {title}",
    "cancelled": "Your RSVP to {title} is cancelled",
}


class Notification(BaseModel):
    """The decrypted payload every push carries."""

    title: str
    body: str
    event_id: UUID
    url: str
    kind: str

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def notification_for(message: RsvpMessage | PushSend, app_url: str) -> tuple[Notification, Urgency]:
    """The notification for an RSVP event or a ``push.send`` command, and how urgent it is."""
    data = message.data
    if isinstance(data, RsvpPayload):
        title = _RSVP_TITLES[data.status].format(title=data.event.title)
        body = _when_and_where(data.event.starts_at.strftime("%a %d %b %H:%M UTC"), data)
        return _notification(title, body, data.event.event_id, app_url, "confirmation"), "normal"
    event = data.event
    if data.kind == "announcement":
        if not data.body:
            raise PermanentError("announcement without a body", reason="invalid_command")
        title, body = data.subject or f"News about {event.title}", data.body
    elif data.kind == "reminder":
        title = f"Reminder: {event.title}"
        body = f"Starts {event.starts_at.strftime('%a %d %b %H:%M UTC')}"
    else:
        status = data.status or "going"
        title = _RSVP_TITLES.get(status, "{title}").format(title=event.title)
        body = f"Starts {event.starts_at.strftime('%a %d %b %H:%M UTC')}"
    # a reminder is only worth something before the event: wake the device for it
    urgency: Urgency = "high" if data.kind == "reminder" else "normal"
    return _notification(title, body, event.event_id, app_url, data.kind), urgency


def _when_and_where(when: str, data: RsvpPayload) -> str:
    where = f" · {data.event.location}" if data.event.location else ""
    guests = f" · +{data.guests} guest{'s' if data.guests != 1 else ''}" if data.guests else ""
    return f"{when}{where}{guests}"


def _notification(title: str, body: str, event_id: UUID, app_url: str, kind: str) -> Notification:
    return Notification(
        title=" ".join(title.split())[:150],
        body=body[:_BODY_LIMIT],
        event_id=event_id,
        url=f"{app_url.rstrip('/')}/events/{event_id}",
        kind=kind,
    )
