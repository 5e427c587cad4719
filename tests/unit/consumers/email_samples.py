"""Fixed inputs for the renderer, and the wire bytes each one gave when they were recorded.

``golden/<case>.eml`` holds what the renderer made of each case (its ``Date``
header pinned): a change to how emails are built must give the recipient
the very same bytes, so it is checked against them. ``python -m
tests.unit.consumers.email_samples`` writes them again, after a change meant
to alter what recipients get.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from email_consumer.render import Renderer
from shared.schemas import (
    Attendee,
    EmailSend,
    Envelope,
    EventSummary,
    NotificationCommand,
    RsvpCancelled,
    RsvpCreated,
    RsvpPayload,
    RsvpUpdated,
)

GOLDEN = Path(__file__).parent / "golden"
MAIL_FROM = "RSVP Events <no-reply@mail.example.org>"
PINNED_DATE = "Fri, 12 Jun 2026 08:00:00 GMT"
OCCURRED_AT = datetime(2026, 6, 1, 9, 30, 15, 123456, tzinfo=UTC)
STARTS_AT = datetime(2026, 6, 12, 20, 0, tzinfo=timezone(timedelta(hours=2)))


def _id(n: int) -> UUID:
    return UUID(int=0x5EED_0000_0000_4000_8000_0000_0000_0000 + n)


def event(n: int = 1, **fields: Any) -> EventSummary:
    defaults: dict[str, Any] = {
        "event_id": _id(100 + n),
        "title": "Summer party",
        "starts_at": STARTS_AT,
        "ends_at": STARTS_AT + timedelta(hours=3),
        "location": "The Park, Gate 2",
        "organizer_name": "Olga Organiser",
        "organizer_email": "olga@example.com",
    }
    return EventSummary(**{**defaults, **fields})


def attendee(n: int = 1, name: str = "Ada Lovelace", address: str = "ada@example.com") -> Attendee:
    return Attendee(user_id=_id(200 + n), email=address, name=name)


def _fixed(message: Envelope[Any], n: int) -> Any:
    return message.model_copy(
        update={"message_id": _id(n), "correlation_id": _id(n), "occurred_at": OCCURRED_AT}
    )


def rsvp(
    n: int,
    status: str = "going",
    *,
    kind: type[RsvpCreated | RsvpUpdated | RsvpCancelled] = RsvpCreated,
    **fields: Any,
) -> RsvpCreated | RsvpUpdated | RsvpCancelled:
    payload: dict[str, Any] = {
        "rsvp_id": _id(300 + n),
        "event": event(),
        "attendee": attendee(),
        "status": status,
        "version": 1,
    }
    return _fixed(kind.first(RsvpPayload(**{**payload, **fields}), producer="tests"), n)  # type: ignore[no-any-return]


def command(n: int, kind: str, **fields: Any) -> EmailSend:
    payload: dict[str, Any] = {"kind": kind, "recipient": attendee(), "event": event()}
    message = EmailSend.first(NotificationCommand(**{**payload, **fields}), producer="tests")
    return _fixed(message, n)  # type: ignore[no-any-return]


_LONG = 'A very long title, with commas; semicolons\\ backslashes and "quotes" ' * 3
_UNICODE_NAME = "Jörg Müller-Łukasiewicz 李小龍"

#: name -> how the renderer is asked for it
CASES: dict[str, Callable[[Renderer], bytes]] = {
    "going": lambda r: r.for_rsvp(rsvp(1)).message,
    "maybe": lambda r: r.for_rsvp(rsvp(2, "maybe")).message,
    "declined": lambda r: r.for_rsvp(rsvp(3, "declined")).message,
    "declined_after_going": lambda r: (
        r.for_rsvp(
            rsvp(4, "declined", kind=RsvpUpdated, previous_status="going", version=3)
        ).message
    ),
    "cancelled": lambda r: r.for_rsvp(rsvp(5, "cancelled", kind=RsvpCancelled, version=4)).message,
    "going_with_guests": lambda r: r.for_rsvp(rsvp(6, guests=2)).message,
    "maybe_after_going": lambda r: (
        r.for_rsvp(rsvp(7, "maybe", kind=RsvpUpdated, previous_status="going", version=2)).message
    ),
    "unicode": lambda r: (
        r.for_rsvp(
            rsvp(
                8,
                attendee=attendee(2, _UNICODE_NAME, "jorg@bücher.example"),
                event=event(2, title="Fête de la Musique", location="Café Ünter den Linden"),
            )
        ).message
    ),
    "long_and_escaped": lambda r: (
        r.for_rsvp(
            rsvp(
                9,
                attendee=attendee(3, "Ünïcödé " * 12 + 'O\'Brien "Bob"'),
                event=event(
                    3,
                    title=_LONG.strip()[:200],
                    location='Room; 1, \\ "B"',
                    organizer_name='Olga "the" Organiser; Ltd',
                ),
            )
        ).message
    ),
    "no_end_no_location_no_organizer": lambda r: (
        r.for_rsvp(
            rsvp(
                10,
                event=event(
                    4, ends_at=None, location=None, organizer_name=None, organizer_email=None
                ),
            )
        ).message
    ),
    "other_offset_and_multi_day": lambda r: (
        r.for_rsvp(
            rsvp(
                11,
                event=event(
                    5,
                    starts_at=datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5))),
                    ends_at=datetime(2027, 1, 2, 1, 0, tzinfo=timezone(timedelta(hours=-5))),
                ),
            )
        ).message
    ),
    "html_in_user_text": lambda r: (
        r.for_rsvp(
            rsvp(
                12,
                attendee=attendee(4, "<b>Eve</b> & co"),
                event=event(6, title="<script>alert(1)</script> & more", location="<i>here</i>"),
            )
        ).message
    ),
    "command_confirmation": lambda r: (
        r.for_command(command(13, "confirmation", status="going")).message
    ),
    "command_reminder_going": lambda r: (
        r.for_command(command(14, "reminder", status="going", remind_before_seconds=5400)).message
    ),
    "command_reminder_maybe": lambda r: (
        r.for_command(command(15, "reminder", status="maybe", remind_before_seconds=3600)).message
    ),
    "command_announcement": lambda r: (
        r.for_command(
            command(
                16,
                "announcement",
                subject="Grüße aus dem Park",
                body="Dear all,\n\nthe gate moved.\r\nSee you there!\n\n"
                + "Ünïcode all the way " * 60,
            )
        ).message
    ),
}


def rendered(case: str, renderer: Renderer) -> bytes:
    """The wire bytes of ``case`` with the ``Date`` header pinned."""
    raw = CASES[case](renderer)
    head, sep, rest = raw.partition(b"\r\nDate: ")
    _, _, rest = rest.partition(b"\r\n")
    return head + sep + PINNED_DATE.encode() + b"\r\n" + rest


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    renderer = Renderer(MAIL_FROM)
    for name in CASES:
        (GOLDEN / f"{name}.eml").write_bytes(rendered(name, renderer))
    print(f"wrote {len(CASES)} cases to {GOLDEN}")
