"""The iCalendar invitation or cancellation attached to an email, as bytes.

Every line is made by icalendar itself (its escaping, parameter quoting and
folding), in the order its ``Calendar.to_ical()`` writes them, so the bytes
are what a ``Calendar`` of the same properties would serialise to. What is
skipped is the rest of that path, which cost more than the lines: a
component tree, sorting its keys and a tz look-up per date-time, built and
walked for every email. The lines that only depend on the event
(:class:`EventLines`) are made once per event and reused for everyone who
answers it; per email only the stamp, sequence, attendee and status remain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from icalendar import vCalAddress, vDatetime, vInt, vText
from icalendar.parser import Contentline

from shared.schemas import EventSummary

DEFAULT_DURATION = timedelta(hours=1)  # for events without an end
METHODS = ("REQUEST", "CANCEL")
_PRODID = "-//RSVP pipeline//email_consumer//EN"
#: icalendar folds a line once it reaches this many octets (RFC 5545: 75 at most).
_FOLD_AT = 75


def _line(name: str, value: Any) -> bytes:
    """One content line with its CRLF, as ``Component.to_ical`` writes it."""
    line = Contentline.from_parts(name, value.params, value)
    encoded: bytes = line.encode("utf-8")
    if len(encoded) >= _FOLD_AT:  # else icalendar's fold returns it as it is, char by char
        encoded = line.to_ical()
    return encoded + b"\r\n"


def _lines(*lines: tuple[str, Any]) -> bytes:
    return b"".join(_line(name, value) for name, value in lines)


# The calendar's own lines, and the VEVENT's BEGIN, for each method; its END
# and the calendar's close every invitation.
_OPENING = {
    method: b"BEGIN:VCALENDAR\r\n"
    + _lines(("VERSION", vText("2.0")), ("PRODID", vText(_PRODID)), ("METHOD", vText(method)))
    + b"BEGIN:VEVENT\r\n"
    for method in METHODS
}
_STATUS = {
    method: _line("STATUS", vText("CANCELLED" if method == "CANCEL" else "CONFIRMED"))
    for method in METHODS
}
_CLOSING = b"END:VEVENT\r\nEND:VCALENDAR\r\n"


@dataclass(frozen=True, slots=True)
class EventLines:
    """The VEVENT lines that say only what the event is, in the order they are written.

    ``Calendar.to_ical()`` writes SUMMARY, DTSTART, DTEND, DTSTAMP, UID,
    SEQUENCE first, then the rest by name (ATTENDEE, LOCATION, ORGANIZER,
    STATUS): the event's lines come in three runs around the email's own.
    """

    summary_to_end: bytes  #: SUMMARY, DTSTART, DTEND
    uid: bytes  #: UID
    location_organizer: bytes  #: LOCATION (if any), ORGANIZER


def event_lines(event: EventSummary, *, organizer_address: str, organizer_name: str) -> EventLines:
    """What every invitation to ``event`` says about it.

    Parameter values (``organizer_name`` here, ``attendee_name`` below) come
    in safe already: one line, no double quote.
    """
    ends_at = event.ends_at or event.starts_at + DEFAULT_DURATION
    organizer = vCalAddress(f"mailto:{organizer_address}")
    organizer.params["cn"] = organizer_name
    location = [("LOCATION", vText(event.location))] if event.location else []
    return EventLines(
        summary_to_end=_lines(
            ("SUMMARY", vText(event.title)),
            ("DTSTART", vDatetime(event.starts_at.astimezone(UTC))),
            ("DTEND", vDatetime(ends_at.astimezone(UTC))),
        ),
        uid=_line("UID", vText(f"{event.event_id}@rsvp")),
        location_organizer=_lines(*location, ("ORGANIZER", organizer)),
    )


def invitation(
    event: EventLines,
    *,
    method: str,
    stamp: datetime,
    sequence: int,
    attendee_address: str,
    attendee_name: str,
    partstat: str,
) -> bytes:
    """The whole ``.ics`` of ``method`` (REQUEST or CANCEL) for one attendee."""
    attendee = vCalAddress(f"mailto:{attendee_address}")
    attendee.params["cn"] = attendee_name
    attendee.params["partstat"] = partstat
    return b"".join(
        (
            _OPENING[method],
            event.summary_to_end,
            _line("DTSTAMP", vDatetime(stamp)),
            event.uid,
            _line("SEQUENCE", vInt(sequence)),
            _line("ATTENDEE", attendee),
            event.location_organizer,
            _STATUS[method],
            _CLOSING,
        )
    )
