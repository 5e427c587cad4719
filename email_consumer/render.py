"""Turn an RSVP event or an email command into a ready-to-send email.

Text and HTML come from Jinja2 templates (HTML autoescaped); going and
cancelling attach an iCalendar invitation or cancellation (``invite.py``).
The parts are put into CRLF wire bytes directly (``mime.py``), as the compat32
generator would write them: building the email is what limits the
consumer's throughput, and the ``email`` package's generator and the
modern ``EmailMessage`` API cost several times the CPU (see bench.md).
compat32 does not refuse line breaks in header values, so ``mime.WIRE``
does, and every header made from user text goes through ``_one_line`` first.

What depends only on the event (its date line, its calendar lines) is made
once per event and kept in a bounded LRU keyed by the whole
``EventSummary``: an edited event differs in some field, so it is a new key
and never served stale.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape
from markupsafe import Markup, escape

from email_consumer import invite, mime
from email_consumer.mailer import OutgoingEmail
from shared.messaging.errors import PermanentError
from shared.schemas import Attendee, Envelope, EventSummary, NotificationCommand, RsvpPayload

TEMPLATES_DIR = Path(__file__).parent / "templates"
#: Events whose shared parts are kept. An RSVP's neighbours in the queue are
#: mostly answers to the same few events; an event not among the last ones
#: costs its parts again, nothing more.
EVENT_CACHE_SIZE = 256

_SUBJECTS = {
    "going": "You're going: {title}",
    "maybe": "You said maybe: {title}",
    "declined": "You declined: {title}",
    "cancelled": "RSVP cancelled: {title}",
}
_PARTSTAT = {"going": "ACCEPTED", "maybe": "TENTATIVE", "declined": "DECLINED"}
# C0 controls and DEL that str.split() leaves alone; they have no place in a header
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0E, 0x1C), 0x7F])


@dataclass(frozen=True, slots=True)
class _EventParts:
    """What every email about one event says alike."""

    when: str  #: the date line of the text and HTML
    calendar: invite.EventLines  #: its calendar lines


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

    def __init__(
        self,
        mail_from: str,
        *,
        templates_dir: Path | str | None = None,
        event_cache_size: int = EVENT_CACHE_SIZE,
    ) -> None:
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
        self._event_parts = lru_cache(maxsize=event_cache_size)(self._parts_of)

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

    def cached_events(self) -> int:
        """How many events' shared parts are kept now."""
        return self._event_parts.cache_info().currsize

    def _build(self, source: Envelope[Any], email: _Email) -> OutgoingEmail:
        recipient = _ascii_address(email.recipient.email)
        subject = _one_line(email.subject)
        shared = self._event_parts(email.event)
        context = {
            **email.context,
            "subject": subject,
            "name": email.recipient.name,
            "event": email.event,
            "when": shared.when,
        }
        text = self._templates[f"{email.template}.txt"].render(context)
        html = self._templates[f"{email.template}.html"].render(context)
        calendar = ""
        if email.ics_method is not None:
            calendar = invite.invitation(
                shared.calendar,
                method=email.ics_method,
                stamp=source.occurred_at,
                sequence=email.sequence,
                attendee_address=recipient,
                attendee_name=_param(email.recipient.name),
                partstat=email.partstat,
            ).decode("utf-8")
        # Fixed boundaries spare random ones. "=_" never occurs in quoted-printable;
        # 7bit text could hold it only by quoting this very message id.
        boundary = f"=_{source.message_id.hex}"
        if any(boundary in part for part in (text, html, calendar)):
            boundary += secrets.token_hex(8)
        body = mime.multipart(
            "alternative", boundary + "a", mime.text(text, "plain"), mime.text(html, "html")
        )
        if email.ics_method is not None:
            ics = mime.text(calendar, "calendar", f"; method={email.ics_method}")
            ics.add_header("Content-Disposition", 'attachment; filename="invite.ics"')
            body = mime.multipart("mixed", boundary + "m", body, ics)
        message_id = f"<{source.message_id}@{self._domain}>"
        body.add_header("MIME-Version", "1.0")
        body.add_header("From", self._from)
        body.add_header("To", _mailbox("To", email.recipient.name, recipient))
        body.add_header("Subject", subject)
        body.add_header("Date", formatdate(usegmt=True))
        body.add_header("Message-ID", message_id)
        body.add_header("X-Correlation-ID", str(source.correlation_id))
        body.add_header("Auto-Submitted", "auto-generated")  # RFC 3834: no auto-replies
        return OutgoingEmail(self._sender, (recipient,), body.as_bytes(), message_id)

    def _parts_of(self, event: EventSummary) -> _EventParts:
        lines = invite.event_lines(
            event,
            organizer_address=event.organizer_email or self._sender,
            organizer_name=_param(event.organizer_name or "RSVP"),
        )
        return _EventParts(when=_when(event), calendar=lines)


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
