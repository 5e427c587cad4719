"""Turn an RSVP event or an email command into a ready-to-send email.

Text and HTML come from Jinja2 templates (HTML autoescaped); going and
cancelling attach an iCalendar invitation or cancellation. The message is
built with the compat32 ``email.mime`` classes and flattened here, once, to
CRLF bytes: the modern ``EmailMessage`` API costs several times the CPU (see
bench.md), and building the email is what limits the consumer's throughput.
compat32 does not refuse line breaks in header values, so ``_WIRE`` does, and
every header made from user text goes through ``_one_line`` first.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.header import Header
from email.message import Message
from email.policy import Compat32
from email.utils import formataddr, formatdate, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icalendar import Calendar, Event, vCalAddress, vDatetime, vInt, vText
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from markupsafe import Markup, escape

from email_consumer.mailer import OutgoingEmail
from shared.messaging.errors import PermanentError
from shared.schemas import Attendee, Envelope, EventSummary, NotificationCommand, RsvpPayload

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_DURATION = timedelta(hours=1)  # for events without an end

_SUBJECTS = {
    "going": "You're going: {title}",
    "maybe": "You said maybe: {title}",
    "declined": "You declined: {title}",
    "cancelled": "RSVP cancelled: {title}",
}
_PARTSTAT = {"going": "ACCEPTED", "maybe": "TENTATIVE", "declined": "DECLINED"}
# C0 controls and DEL that str.split() leaves alone; they have no place in a header
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F])


class _WirePolicy(Compat32):
    """compat32 with CRLF that refuses line breaks in a header value."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, str):
            if "\r" in value or "\n" in value:
                raise ValueError(f"line break in the {name} header")
            if value.isascii() and len(name) + len(value) < 77:
                return f"{name}: {value}\r\n".encode("ascii")  # nothing to fold or encode
        return super().fold_binary(name, value)


_WIRE = _WirePolicy(linesep="\r\n")
if TYPE_CHECKING:  # Message is generic only in the stubs
    _Part = Message[str, str | Header]


@dataclass(frozen=True, slots=True)
class _Email:
    """What varies between kinds of email, before it becomes MIME."""

    template: str
    subject: str
    recipient: Attendee
    event: EventSummary
    context: dict[str, Any]
    ics_method: str | None = None  # REQUEST or CANCEL, or no attachment
    partstat: str = "ACCEPTED"
    sequence: int = 0


class Renderer:
    """Builds emails from messages; build once, the templates are compiled once."""

    def __init__(self, mail_from: str, *, templates_dir: Path | str | None = None) -> None:
        name, address = parseaddr(mail_from)
        if "@" not in address or not address.isascii():
            raise ValueError(f"MAIL_FROM needs an ASCII address: {mail_from!r}")
        self._sender = address
        self._from = _mailbox("From", name, address)
        self._domain = address.rpartition("@")[2]
        env = Environment(
            loader=FileSystemLoader(templates_dir or TEMPLATES_DIR),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        env.filters["paragraphs"] = _paragraphs
        self._templates: dict[str, Template] = {
            f"{kind}.{ext}": env.get_template(f"{kind}.{ext}")
            for kind in ("confirmation", "reminder", "announcement")
            for ext in ("txt", "html")
        }

    def for_rsvp(self, message: Envelope[RsvpPayload]) -> OutgoingEmail:
        """The confirmation for ``rsvp.created|updated|cancelled``."""
        rsvp = message.data
        status = "cancelled" if message.type == "rsvp.cancelled" else rsvp.status
        email = _confirmation(
            rsvp.attendee, rsvp.event, status, rsvp.previous_status, rsvp.guests, rsvp.version
        )
        return self._build(message, email)

    def for_command(self, message: Envelope[NotificationCommand]) -> OutgoingEmail:
        """A confirmation again, a reminder or an organizer's announcement."""
        command = message.data
        if command.kind == "confirmation":
            if command.status is None:
                raise PermanentError("confirmation without a status", reason="invalid_command")
            email = _confirmation(command.recipient, command.event, command.status, None, 0, 0)
        elif command.kind == "reminder":
            email = _reminder(command)
        else:
            email = _announcement(command)
        return self._build(message, email)

    def _build(self, source: Envelope[Any], email: _Email) -> OutgoingEmail:
        recipient = _ascii_address(email.recipient.email)
        subject = _one_line(email.subject)
        context = {
            **email.context,
            "subject": subject,
            "name": email.recipient.name,
            "event": email.event,
            "when": _when(email.event),
        }
        text = self._templates[f"{email.template}.txt"].render(context)
        html = self._templates[f"{email.template}.html"].render(context)
        invite = ""
        if email.ics_method is not None:
            invite = self._calendar(source, email, email.ics_method, recipient).decode("utf-8")
        # Fixed boundaries spare the generator's random ones and the regex it compiles
        # per message to check them. "=_" never occurs in quoted-printable; 7bit text
        # could hold it only by quoting this very message id.
        boundary = f"=_{source.message_id.hex}"
        if any(boundary in part for part in (text, html, invite)):
            boundary += secrets.token_hex(8)
        body = _multipart("alternative", boundary + "a", _text(text, "plain"), _text(html, "html"))
        if email.ics_method is not None:
            ics = _text(invite, "calendar", f"; method={email.ics_method}")
            ics["Content-Disposition"] = 'attachment; filename="invite.ics"'
            body = _multipart("mixed", boundary + "m", body, ics)
        message_id = f"<{source.message_id}@{self._domain}>"
        body["MIME-Version"] = "1.0"
        body["From"] = self._from
        body["To"] = _mailbox("To", email.recipient.name, recipient)
        body["Subject"] = subject
        body["Date"] = formatdate(usegmt=True)
        body["Message-ID"] = message_id
        body["X-Correlation-ID"] = str(source.correlation_id)
        body["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
        return OutgoingEmail(self._sender, (recipient,), body.as_bytes(policy=_WIRE), message_id)

    def _calendar(self, source: Envelope[Any], email: _Email, method: str, recipient: str) -> bytes:
        event = email.event
        vevent = Event()
        vevent["uid"] = vText(f"{event.event_id}@rsvp")
        vevent["dtstamp"] = vDatetime(source.occurred_at)
        vevent["sequence"] = vInt(email.sequence)
        vevent["dtstart"] = vDatetime(_utc(event.starts_at))
        vevent["dtend"] = vDatetime(_utc(event.ends_at or event.starts_at + DEFAULT_DURATION))
        vevent["summary"] = vText(event.title)
        if event.location:
            vevent["location"] = vText(event.location)
        organizer = vCalAddress(f"mailto:{event.organizer_email or self._sender}")
        organizer.params["cn"] = _param(event.organizer_name or "RSVP")
        vevent["organizer"] = organizer
        attendee = vCalAddress(f"mailto:{recipient}")
        attendee.params["cn"] = _param(email.recipient.name)
        attendee.params["partstat"] = email.partstat
        vevent["attendee"] = attendee
        vevent["status"] = vText("CANCELLED" if method == "CANCEL" else "CONFIRMED")
        calendar = Calendar()
        calendar["prodid"] = vText("-//RSVP pipeline//email_consumer//EN")
        calendar["version"] = vText("2.0")
        calendar["method"] = vText(method)
        calendar.subcomponents.append(vevent)
        result: bytes = calendar.to_ical()
        return result


def _confirmation(
    recipient: Attendee,
    event: EventSummary,
    status: str,
    previous: str | None,
    guests: int,
    version: int,
) -> _Email:
    # An attendee who had said "going" has the event in their calendar: take it out.
    cancel = status == "cancelled" or (status == "declined" and previous == "going")
    method = "REQUEST" if status == "going" else "CANCEL" if cancel else None
    return _Email(
        template="confirmation",
        subject=_SUBJECTS[status].format(title=event.title),
        recipient=recipient,
        event=event,
        context={
            "status": status,
            "previous_status": previous if previous not in (None, status) else None,
            "guests": guests,
            "calendar_cancel": cancel,
        },
        ics_method=method,
        partstat=_PARTSTAT.get(status, "DECLINED"),
        sequence=version,
    )


def _reminder(command: NotificationCommand) -> _Email:
    starts_in = _starts_in(command.remind_before_seconds)
    return _Email(
        template="reminder",
        subject=f"Reminder: {command.event.title} starts {starts_in}",
        recipient=command.recipient,
        event=command.event,
        context={"starts_in": starts_in},
        ics_method="REQUEST" if command.status == "going" else None,
    )


def _announcement(command: NotificationCommand) -> _Email:
    if not command.body:
        raise PermanentError("announcement without a body", reason="invalid_command")
    return _Email(
        template="announcement",
        subject=command.subject or f"News about {command.event.title}",
        recipient=command.recipient,
        event=command.event,
        context={"body": command.body},
    )


def _text(body: str, subtype: str, params: str = "") -> _Part:
    part: _Part = Message(policy=_WIRE)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"{params}'
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(body)
    else:  # binascii's quoted-printable is C, the email package's is Python
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(binascii.b2a_qp(body.encode("utf-8")).decode("ascii"))
    return part


def _multipart(subtype: str, boundary: str, *parts: _Part) -> _Part:
    container: _Part = Message(policy=_WIRE)
    container["Content-Type"] = f'multipart/{subtype}; boundary="{boundary}"'
    container.set_payload(list(parts))
    return container


def _mailbox(header: str, name: str, address: str) -> str | Header:
    """``Name <address>``, the name quoted or RFC 2047-encoded as it needs."""
    name = _one_line(name)
    if name.isascii():
        return formataddr((name, address))
    mailbox = Header(name, "utf-8", header_name=header)  # folds knowing "To: " comes first
    mailbox.append(f"<{address}>", "us-ascii")
    return mailbox


def _ascii_address(address: str) -> str:
    """The address with its domain in IDNA; a non-ASCII local part needs SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        raise PermanentError(f"{address!r} needs SMTPUTF8", reason="invalid_recipient")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise PermanentError(f"{address!r}: bad domain", reason="invalid_recipient") from exc


def _one_line(text: str) -> str:
    """Header-safe text: every line break and run of whitespace becomes one space."""
    return " ".join(text.translate(_CONTROLS).split())


def _param(text: str) -> str:
    """An iCalendar parameter value may hold neither a line break nor a quote."""
    return _one_line(text).replace('"', "'")


def _paragraphs(text: str) -> Markup:
    """Escaped plain text as HTML paragraphs, single line breaks kept."""
    blocks = (b.strip() for b in text.replace("\r\n", "\n").split("\n\n"))
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(b).split("\n")))
        for b in blocks
        if b
    )


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _when(event: EventSummary) -> str:
    start = _utc(event.starts_at)
    text = start.strftime("%A %d %B %Y, %H:%M")
    if event.ends_at is not None:
        end = _utc(event.ends_at)
        same_day = end.date() == start.date()
        text += end.strftime("-%H:%M" if same_day else " to %A %d %B %Y, %H:%M")
    return text + " UTC"


def _starts_in(seconds: int | None) -> str:
    """``in 1 hour``, ``in 24 hours``, ``in 1 h 30 min``, ``in 15 minutes`` or ``soon``."""
    if seconds is None or seconds < 60:
        return "soon"
    hours, minutes = divmod(seconds // 60, 60)
    if minutes and hours:
        return f"in {hours} h {minutes} min"
    if hours:
        return f"in {hours} hour{'s' if hours != 1 else ''}"
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"
