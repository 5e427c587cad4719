"""What the emails say and how they are put on the wire (no I/O)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any
from uuid import uuid4

import pytest
from icalendar import Calendar, Event, vCalAddress, vDatetime, vInt, vText

from email_consumer.invite import event_lines, invitation
from email_consumer.mailer import OutgoingEmail
from email_consumer.render import Renderer
from shared.messaging.errors import PermanentError
from shared.schemas import (
    Attendee,
    EmailSend,
    EventSummary,
    NotificationCommand,
    RsvpCancelled,
    RsvpCreated,
    RsvpPayload,
    RsvpUpdated,
)
from tests.unit.consumers import email_samples as samples
from tests.unit.consumers.email_samples import CASES, GOLDEN, MAIL_FROM, STARTS_AT, rendered


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(MAIL_FROM)


def an_event(**fields: Any) -> EventSummary:
    """The samples' event with an id of its own (the render cache must tell events apart)."""
    return samples.event(**{"event_id": uuid4(), **fields})


def an_attendee(name: str = "Ada Lovelace", email_address: str = "ada@example.com") -> Attendee:
    return samples.attendee(name=name, address=email_address).model_copy(
        update={"user_id": uuid4()}
    )


def an_rsvp(
    status: str = "going",
    *,
    message_type: type[RsvpCreated | RsvpUpdated | RsvpCancelled] = RsvpCreated,
    **fields: Any,
) -> RsvpCreated | RsvpUpdated | RsvpCancelled:
    payload: dict[str, Any] = {
        "rsvp_id": uuid4(),
        "event": an_event(),
        "attendee": an_attendee(),
        "status": status,
        "version": 1,
    }
    return message_type.first(RsvpPayload(**{**payload, **fields}), producer="tests")


def a_command(kind: str, **fields: Any) -> EmailSend:
    payload: dict[str, Any] = {"kind": kind, "recipient": an_attendee(), "event": an_event()}
    return EmailSend.first(NotificationCommand(**{**payload, **fields}), producer="tests")


def parsed(outgoing: OutgoingEmail) -> EmailMessage:
    message = email.message_from_bytes(outgoing.message, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None, f"no text/{subtype} part"
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def invite(message: EmailMessage) -> Calendar | None:
    parts = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    if not parts:
        return None
    (part,) = parts
    assert part.get_content_disposition() == "attachment"
    calendar = Calendar.from_ical(part.get_content())
    assert part.get_param("method") == str(calendar["method"])
    return calendar


def the_vevent(calendar: Calendar | None) -> Any:
    assert calendar is not None, "no calendar attachment"
    (vevent,) = calendar.walk("VEVENT")
    return vevent


# -- wording ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "subject", "sentence"),
    [
        ("going", "You're going: Summer party", "You're going to {}"),
        ("maybe", "You said maybe: Summer party", "You said maybe to {}"),
        ("declined", "You declined: Summer party", "You declined {}"),
        ("cancelled", "RSVP cancelled: Summer party", "Your RSVP to {} is cancelled"),
    ],
)
def test_confirmation_wording_follows_the_status(
    renderer: Renderer, status: str, subject: str, sentence: str
) -> None:
    message_type = RsvpCancelled if status == "cancelled" else RsvpCreated

    message = parsed(renderer.for_rsvp(an_rsvp(status, message_type=message_type)))

    assert message["Subject"] == subject
    assert sentence.format("Summer party") in body(message, "plain")
    assert sentence.format("<strong>Summer party</strong>") in body(message, "html")


def test_going_with_guests_says_how_many(renderer: Renderer) -> None:
    message = parsed(renderer.for_rsvp(an_rsvp("going", guests=2)))

    assert "You're going to Summer party with 2 guests." in body(message, "plain")


def test_a_changed_answer_mentions_the_previous_one(renderer: Renderer) -> None:
    rsvp = an_rsvp("going", message_type=RsvpUpdated, previous_status="maybe", version=2)

    message = parsed(renderer.for_rsvp(rsvp))

    assert 'You changed your answer from "maybe".' in body(message, "plain")


def test_the_event_details_are_in_both_parts_in_utc(renderer: Renderer) -> None:
    message = parsed(renderer.for_rsvp(an_rsvp("maybe")))

    for subtype in ("plain", "html"):
        text = body(message, subtype)
        assert "Friday 12 June 2026, 18:00-21:00 UTC" in text
        assert "The Park, Gate 2" in text
        assert "Olga Organiser" in text


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [(3600, "starts in 1 hour"), (86400, "starts in 24 hours"), (900, "starts in 15 minutes")],
)
def test_a_reminder_says_how_soon_the_event_starts(
    renderer: Renderer, seconds: int, phrase: str
) -> None:
    command = a_command("reminder", remind_before_seconds=seconds, status="going")

    message = parsed(renderer.for_command(command))

    assert message["Subject"] == f"Reminder: Summer party {phrase}"
    assert phrase in body(message, "plain")
    assert phrase in body(message, "html")


def test_an_announcement_carries_the_organizers_subject_and_body(renderer: Renderer) -> None:
    command = a_command(
        "announcement", subject="Bring a jumper", body="It gets cold.\n\nSee you there!"
    )

    message = parsed(renderer.for_command(command))

    assert message["Subject"] == "Bring a jumper"
    assert "It gets cold.\n\nSee you there!" in body(message, "plain")
    assert "<p>It gets cold.</p>\n<p>See you there!</p>" in body(message, "html")
    assert invite(message) is None


def test_a_confirmation_command_reads_like_the_rsvp_confirmation(renderer: Renderer) -> None:
    message = parsed(renderer.for_command(a_command("confirmation", status="going")))

    assert message["Subject"] == "You're going: Summer party"
    assert "You're going to Summer party" in body(message, "plain")


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"kind": "confirmation"}, "confirmation without a status"),
        ({"kind": "announcement", "subject": "Hi"}, "announcement without a body"),
    ],
)
def test_an_incomplete_command_is_a_permanent_error(
    renderer: Renderer, fields: dict[str, Any], what: str
) -> None:
    with pytest.raises(PermanentError, match=what) as caught:
        renderer.for_command(a_command(**fields))

    assert caught.value.reason == "invalid_command"


# -- structure and headers -------------------------------------------------------


@pytest.mark.parametrize(
    "outgoing",
    [
        lambda r: r.for_rsvp(an_rsvp("going")),
        lambda r: r.for_rsvp(an_rsvp("maybe")),
        lambda r: r.for_command(a_command("reminder", remind_before_seconds=3600)),
        lambda r: r.for_command(a_command("announcement", body="Hello")),
    ],
    ids=["going", "maybe", "reminder", "announcement"],
)
def test_every_email_has_a_text_and_an_html_alternative(renderer: Renderer, outgoing: Any) -> None:
    message = parsed(outgoing(renderer))

    alternatives = [p for p in message.walk() if p.get_content_type() == "multipart/alternative"]
    assert len(alternatives) == 1
    subtypes = [p.get_content_type() for p in alternatives[0].iter_parts()]
    assert subtypes == ["text/plain", "text/html"]


def test_headers_name_sender_recipient_and_correlation(renderer: Renderer) -> None:
    rsvp = an_rsvp("going")

    outgoing = renderer.for_rsvp(rsvp)
    message = parsed(outgoing)

    assert outgoing.sender == "no-reply@mail.example.org"
    assert outgoing.recipients == ("ada@example.com",)
    assert getaddresses([message["From"]]) == [("RSVP Events", "no-reply@mail.example.org")]
    assert getaddresses([message["To"]]) == [("Ada Lovelace", "ada@example.com")]
    assert message["X-Correlation-ID"] == str(rsvp.correlation_id)
    assert message["Auto-Submitted"] == "auto-generated"
    sent_at = parsedate_to_datetime(message["Date"])
    assert abs(sent_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_message_id_is_derived_from_the_source_message(renderer: Renderer) -> None:
    rsvp = an_rsvp("going")

    first, again = renderer.for_rsvp(rsvp), renderer.for_rsvp(rsvp)
    other = renderer.for_rsvp(an_rsvp("going"))

    assert first.message_id == again.message_id == f"<{rsvp.message_id}@mail.example.org>"
    assert parsed(first)["Message-ID"] == first.message_id
    assert other.message_id != first.message_id


def test_the_wire_form_is_7bit_with_crlf_line_endings(renderer: Renderer) -> None:
    long_line = "Ünïcode all the way " * 250  # 5000 characters, no line break
    command = a_command(
        "announcement", subject="Grüße", body=long_line, recipient=an_attendee("Zoë")
    )

    raw = renderer.for_command(command).message

    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert long_line.strip() in body(parsed(renderer.for_command(command)), "plain")


def test_non_ascii_names_and_subjects_are_rfc2047_encoded(renderer: Renderer) -> None:
    attendee = an_attendee("Jörg Müller-Łukasiewicz 李小龍")
    rsvp = an_rsvp("going", attendee=attendee, event=an_event(title="Fête de la Musique"))

    outgoing = renderer.for_rsvp(rsvp)
    message = parsed(outgoing)

    raw_headers = outgoing.message.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in raw_headers
    assert message["Subject"] == "You're going: Fête de la Musique"
    assert message["To"].addresses[0].display_name == "Jörg Müller-Łukasiewicz 李小龍"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert "Hi Jörg Müller-Łukasiewicz 李小龍," in body(message, "plain")


def test_a_long_non_ascii_name_is_folded_into_short_encoded_words(renderer: Renderer) -> None:
    name = "Ünïcödé " * 15  # 120 characters
    outgoing = renderer.for_rsvp(an_rsvp("maybe", attendee=an_attendee(name.strip())))

    raw_headers = outgoing.message.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in raw_headers.split(b"\r\n")) <= 78
    # RFC 2047 decoding (the modern parser adds a space between the split words,
    # for the modern API's own output too)
    raw_to = email.message_from_bytes(outgoing.message)["To"]
    assert str(make_header(decode_header(raw_to))) == f"{name.strip()} <ada@example.com>"


def test_an_internationalised_domain_is_sent_in_punycode(renderer: Renderer) -> None:
    attendee = an_attendee(email_address="bob@bücher.de")

    outgoing = renderer.for_rsvp(an_rsvp("maybe", attendee=attendee))

    assert outgoing.recipients == ("bob@xn--bcher-kva.de",)
    assert parsed(outgoing)["To"].addresses[0].addr_spec == "bob@xn--bcher-kva.de"


def test_a_non_ascii_mailbox_name_is_refused_permanently(renderer: Renderer) -> None:
    attendee = an_attendee(email_address="jörg@example.com")

    with pytest.raises(PermanentError) as caught:
        renderer.for_rsvp(an_rsvp("maybe", attendee=attendee))

    assert caught.value.reason == "invalid_recipient"


def test_mail_from_must_be_an_address() -> None:
    with pytest.raises(ValueError, match="MAIL_FROM"):
        Renderer("not an address")


# -- hostile input ---------------------------------------------------------------

HOSTILE = "Bob\r\nBcc: victim@example.com\r\nX-Injected: yes"


def test_user_text_cannot_inject_headers(renderer: Renderer) -> None:
    rsvp = an_rsvp("going", attendee=an_attendee(HOSTILE), event=an_event(title=HOSTILE))
    command = a_command(
        "announcement", subject=HOSTILE, body=HOSTILE, recipient=an_attendee(HOSTILE)
    )

    for outgoing in (renderer.for_rsvp(rsvp), renderer.for_command(command)):
        message = parsed(outgoing)
        raw_headers = outgoing.message.split(b"\r\n\r\n", 1)[0]

        assert message["Bcc"] is None
        assert message["X-Injected"] is None
        assert b"\r\nBcc:" not in raw_headers
        assert [a.addr_spec for a in message["To"].addresses] == ["ada@example.com"]
        assert outgoing.recipients == ("ada@example.com",)
        assert "\n" not in message["Subject"]


def test_a_body_that_quotes_the_mime_boundary_cannot_end_its_part(renderer: Renderer) -> None:
    message_id = uuid4()
    forged = f"--=_{message_id.hex}a--\nContent-Type: text/html\n\n<b>forged</b>"
    command = EmailSend.first(
        NotificationCommand(
            kind="announcement", recipient=an_attendee(), event=an_event(), body=forged
        ),
        producer="tests",
        message_id=message_id,
    )

    message = parsed(renderer.for_command(command))

    assert forged in body(message, "plain")
    assert len([p for p in message.walk() if p.get_content_type() == "text/html"]) == 1


def test_the_wire_policy_refuses_a_line_break_in_any_header() -> None:
    from email_consumer.mime import WIRE  # the last line of defence

    with pytest.raises(ValueError, match="line break"):
        WIRE.fold_binary("Subject", "Hi\r\nBcc: victim@example.com")


def test_user_text_cannot_inject_calendar_properties(renderer: Renderer) -> None:
    sneaky = 'Eve"\r\nATTENDEE:mailto:mallory@example.com\r\nX: "'
    rsvp = an_rsvp(
        "going",
        attendee=an_attendee(sneaky),
        event=an_event(title=sneaky, location=sneaky, organizer_name=sneaky),
    )

    calendar = invite(parsed(renderer.for_rsvp(rsvp)))

    assert calendar is not None
    vevent = the_vevent(calendar)
    assert str(vevent["attendee"]) == "mailto:ada@example.com"  # one attendee, not a list
    assert "\n" in str(vevent["summary"])  # kept as text, escaped on the wire
    assert "mallory" not in str(vevent["attendee"])


def test_html_escapes_what_users_and_organisers_wrote(renderer: Renderer) -> None:
    script = "<script>alert('x')</script>"
    command = a_command(
        "announcement",
        subject=script,
        body=f"Hello {script}",
        recipient=an_attendee(f"<b>{script}</b>"),
        event=an_event(title=script, location=script),
    )

    message = parsed(renderer.for_command(command))
    html = body(message, "html")

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert f"Hello {script}" in body(message, "plain")  # plain text needs no escaping


# -- the calendar attachment -----------------------------------------------------


def test_going_attaches_a_request_invitation(renderer: Renderer) -> None:
    rsvp = an_rsvp("going", version=3)

    calendar = invite(parsed(renderer.for_rsvp(rsvp)))

    assert calendar is not None
    assert str(calendar["method"]) == "REQUEST"
    vevent = the_vevent(calendar)
    event = rsvp.data.event
    assert str(vevent["uid"]) == f"{event.event_id}@rsvp"
    assert vevent.decoded("dtstart") == datetime(2026, 6, 12, 18, 0, tzinfo=UTC)
    assert vevent.decoded("dtend") == datetime(2026, 6, 12, 21, 0, tzinfo=UTC)
    assert vevent["dtstart"].to_ical() == b"20260612T180000Z"
    assert str(vevent["summary"]) == "Summer party"
    assert str(vevent["location"]) == "The Park, Gate 2"
    assert str(vevent["organizer"]) == "mailto:olga@example.com"
    assert str(vevent["attendee"]) == "mailto:ada@example.com"
    assert vevent["attendee"].params["PARTSTAT"] == "ACCEPTED"
    assert vevent["attendee"].params["CN"] == "Ada Lovelace"
    assert vevent.decoded("sequence") == 3
    assert str(vevent["status"]) == "CONFIRMED"


def test_the_uid_is_stable_across_changes_of_the_same_rsvp(renderer: Renderer) -> None:
    event = an_event()
    first = an_rsvp("going", event=event, version=1)
    cancel = an_rsvp("cancelled", event=event, version=2, message_type=RsvpCancelled)

    calendars = [invite(parsed(renderer.for_rsvp(m))) for m in (first, cancel)]

    uids = {str(the_vevent(c)["uid"]) for c in calendars if c is not None}
    assert uids == {f"{event.event_id}@rsvp"}


def test_cancelling_attaches_a_cancellation(renderer: Renderer) -> None:
    rsvp = an_rsvp("cancelled", message_type=RsvpCancelled, version=2)

    calendar = invite(parsed(renderer.for_rsvp(rsvp)))

    assert calendar is not None
    assert str(calendar["method"]) == "CANCEL"
    vevent = the_vevent(calendar)
    assert str(vevent["status"]) == "CANCELLED"
    assert vevent.decoded("sequence") == 2


def test_declining_after_going_takes_the_event_out_of_the_calendar(renderer: Renderer) -> None:
    rsvp = an_rsvp("declined", message_type=RsvpUpdated, previous_status="going", version=2)

    message = parsed(renderer.for_rsvp(rsvp))
    calendar = invite(message)

    assert calendar is not None
    assert str(calendar["method"]) == "CANCEL"
    assert the_vevent(calendar)["attendee"].params["PARTSTAT"] == "DECLINED"
    assert "removes the event from your calendar" in body(message, "plain")


@pytest.mark.parametrize("status", ["maybe", "declined"])
def test_no_invitation_without_a_calendar_change(renderer: Renderer, status: str) -> None:
    message = parsed(renderer.for_rsvp(an_rsvp(status)))

    assert invite(message) is None
    assert message.get_content_type() == "multipart/alternative"


def test_a_reminder_to_someone_going_carries_the_invitation(renderer: Renderer) -> None:
    going = a_command("reminder", remind_before_seconds=3600, status="going")
    unknown = a_command("reminder", remind_before_seconds=3600)

    calendar = invite(parsed(renderer.for_command(going)))

    assert calendar is not None
    assert str(calendar["method"]) == "REQUEST"
    assert invite(parsed(renderer.for_command(unknown))) is None


def test_an_event_without_an_end_lasts_an_hour_in_the_calendar(renderer: Renderer) -> None:
    rsvp = an_rsvp("going", event=an_event(ends_at=None, organizer_email=None))

    vevent = the_vevent(invite(parsed(renderer.for_rsvp(rsvp))))

    assert vevent.decoded("dtend") - vevent.decoded("dtstart") == timedelta(hours=1)
    assert str(vevent["organizer"]) == "mailto:no-reply@mail.example.org"


# -- built once per event, never stale ------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_email_is_byte_for_byte_what_it_was_when_recorded(case: str) -> None:
    renderer = Renderer(MAIL_FROM)

    first, again = rendered(case, renderer), rendered(case, renderer)  # again: from the cache

    golden = (GOLDEN / f"{case}.eml").read_bytes()
    assert first == golden
    assert again == golden


def test_an_edited_event_is_never_served_from_before_the_edit(renderer: Renderer) -> None:
    event = an_event(title="Summer party", location="The Park, Gate 2")
    edited = event.model_copy(
        update={
            "title": "Summer party (moved)",
            "location": "The Hall",
            "starts_at": STARTS_AT + timedelta(days=1),
        }
    )
    renderer.for_rsvp(an_rsvp("going", event=event))

    message = parsed(renderer.for_rsvp(an_rsvp("going", event=edited)))

    vevent = the_vevent(invite(message))
    assert str(vevent["summary"]) == "Summer party (moved)"
    assert str(vevent["location"]) == "The Hall"
    assert vevent.decoded("dtstart") == datetime(2026, 6, 13, 18, 0, tzinfo=UTC)
    assert "Saturday 13 June 2026" in body(message, "plain")
    assert "The Hall" in body(message, "html")


def test_answers_to_one_event_each_carry_their_own_attendee(renderer: Renderer) -> None:
    event = an_event()
    ada = an_rsvp("going", event=event, attendee=an_attendee("Ada", "ada@example.com"))
    bob = an_rsvp(
        "cancelled",
        event=event,
        attendee=an_attendee("Bob", "bob@example.com"),
        version=5,
        message_type=RsvpCancelled,
    )

    first, second = (parsed(renderer.for_rsvp(m)) for m in (ada, bob))

    for message, name, address, partstat, sequence in (
        (first, "Ada", "ada@example.com", "ACCEPTED", 1),
        (second, "Bob", "bob@example.com", "DECLINED", 5),
    ):
        vevent = the_vevent(invite(message))
        assert str(vevent["attendee"]) == f"mailto:{address}"
        assert vevent["attendee"].params["CN"] == name
        assert vevent["attendee"].params["PARTSTAT"] == partstat
        assert vevent.decoded("sequence") == sequence
        assert str(vevent["uid"]) == f"{event.event_id}@rsvp"
        assert f"Hi {name}," in body(message, "plain")


def test_the_event_cache_is_bounded() -> None:
    renderer = Renderer(MAIL_FROM, event_cache_size=2)
    events = [an_event() for _ in range(3)]

    outputs = [the_vevent(invite(parsed(renderer.for_rsvp(an_rsvp(event=e))))) for e in events]
    again = the_vevent(invite(parsed(renderer.for_rsvp(an_rsvp(event=events[0])))))

    assert [str(v["uid"]) for v in outputs] == [f"{e.event_id}@rsvp" for e in events]
    assert str(again["uid"]) == f"{events[0].event_id}@rsvp"
    assert renderer.cached_events() == 2


@pytest.mark.parametrize("name_length", range(1, 100, 2))  # across the 75-octet fold
@pytest.mark.parametrize("method", ["REQUEST", "CANCEL"])
def test_the_invitation_is_what_icalendar_writes_for_the_same_calendar(
    name_length: int, method: str
) -> None:
    name = ("Zoë Ünïcode O'Brien; Esq., " * 4)[:name_length]
    event = an_event(
        title=("Party, with; \\ escapes " * 9)[: name_length + 40],
        location=None if name_length % 2 else "Gate 2; left",
        organizer_name="Olga",
    )
    stamp = datetime(2026, 6, 1, 9, 30, 15, tzinfo=UTC)

    ours = invitation(
        event_lines(event, organizer_address="olga@example.com", organizer_name="Olga"),
        method=method,
        stamp=stamp,
        sequence=name_length,
        attendee_address="ada@example.com",
        attendee_name=name,
        partstat="ACCEPTED",
    )

    vevent = Event()
    vevent["uid"] = vText(f"{event.event_id}@rsvp")
    vevent["dtstamp"] = vDatetime(stamp)
    vevent["sequence"] = vInt(name_length)
    vevent["dtstart"] = vDatetime(event.starts_at.astimezone(UTC))
    assert event.ends_at is not None
    vevent["dtend"] = vDatetime(event.ends_at.astimezone(UTC))
    vevent["summary"] = vText(event.title)
    if event.location:
        vevent["location"] = vText(event.location)
    organizer = vCalAddress("mailto:olga@example.com")
    organizer.params["cn"] = "Olga"
    vevent["organizer"] = organizer
    attendee = vCalAddress("mailto:ada@example.com")
    attendee.params["cn"] = name
    attendee.params["partstat"] = "ACCEPTED"
    vevent["attendee"] = attendee
    vevent["status"] = vText("CANCELLED" if method == "CANCEL" else "CONFIRMED")
    calendar = Calendar()
    calendar["prodid"] = vText("-//RSVP pipeline//email_consumer//EN")
    calendar["version"] = vText("2.0")
    calendar["method"] = vText(method)
    calendar.subcomponents.append(vevent)
    assert ours == calendar.to_ical()
