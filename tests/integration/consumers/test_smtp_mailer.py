"""SmtpMailer against a real SMTP server (aiosmtpd, started here), and its error map."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import aiosmtplib
import aiosmtplib.errors
import pytest
from icalendar import Calendar

from email_consumer.mailer import RULES, OutcomeUnknown, OutgoingEmail, SmtpMailer, smtp_error
from email_consumer.render import Renderer
from shared.messaging.errors import PermanentError, TransientError
from shared.schemas import Attendee, EventSummary, RsvpCreated, RsvpPayload
from tests.fakes.senders import RecordingMailer
from tests.support.smtp import SmtpSink, self_signed_tls

renderer = Renderer("RSVP <no-reply@rsvp.localhost>")


def an_email(name: str = "Ada Lovelace", address: str = "ada@example.com") -> OutgoingEmail:
    rsvp = RsvpPayload(
        rsvp_id=uuid4(),
        event=EventSummary(
            event_id=uuid4(),
            title="Summer party",
            starts_at=datetime(2026, 6, 12, 18, tzinfo=UTC),
            location="The Park",
        ),
        attendee=Attendee(user_id=uuid4(), email=address, name=name),
        status="going",
        version=1,
    )
    return renderer.for_rsvp(RsvpCreated.first(rsvp, producer="tests"))


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def mailer(sink: SmtpSink) -> AsyncIterator[SmtpMailer]:
    async with SmtpMailer(sink.host, sink.port, timeout=5) as mailer:
        yield mailer


# -- delivery --------------------------------------------------------------------


async def test_the_mail_arrives_with_recipient_subject_both_parts_and_the_invite(
    sink: SmtpSink, mailer: SmtpMailer
) -> None:
    outgoing = an_email("Jörg Müller")

    reply = await mailer.send(outgoing)

    (mail,) = await sink.wait_for(1)
    assert "queued as" in reply
    assert mail.mail_from == "no-reply@rsvp.localhost"
    assert mail.rcpt_tos == ("ada@example.com",)
    message = mail.message
    assert message["Subject"] == "You're going: Summer party"
    assert message["To"].addresses[0].display_name == "Jörg Müller"
    assert message["Message-ID"] == outgoing.message_id
    types = [part.get_content_type() for part in message.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
    ]
    (ics,) = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    calendar = Calendar.from_ical(ics.get_content())
    assert str(calendar["method"]) == "REQUEST"
    assert str(calendar.walk("VEVENT")[0]["attendee"]) == "mailto:ada@example.com"


async def test_sends_reuse_one_connection(sink: SmtpSink, mailer: SmtpMailer) -> None:
    for _ in range(5):
        await mailer.send(an_email())

    assert len(sink.received) == 5
    assert sink.connections == 1


async def test_a_pool_of_k_connections_sends_k_at_a_time(sink: SmtpSink) -> None:
    async with SmtpMailer(sink.host, sink.port, pool_size=3) as mailer:
        await asyncio.gather(*(mailer.send(an_email()) for _ in range(12)))

    assert len(sink.received) == 12
    assert sink.connections == 3


@pytest.mark.parametrize("noticed", [False, True], ids=["unnoticed", "noticed"])
async def test_a_server_restart_between_sends_is_survived(
    sink: SmtpSink, mailer: SmtpMailer, noticed: bool
) -> None:
    await mailer.send(an_email())

    sink.restart()  # drops the pooled connection
    if noticed:  # let the client's loop see the EOF; else the next send finds out
        await asyncio.sleep(0.1)
    await mailer.send(an_email())

    assert len(sink.received) == 2
    assert sink.connections == 2


async def test_starttls_and_auth_when_configured(tmp_path: Path) -> None:
    server_tls, client_tls = self_signed_tls(tmp_path)
    with SmtpSink(tls=server_tls, credentials={"mailer": "s3cret"}) as sink:
        async with SmtpMailer(
            sink.host,
            sink.port,
            username="mailer",
            password="s3cret",
            starttls=True,
            tls_context=client_tls,
        ) as mailer:
            await mailer.send(an_email())

        (mail,) = sink.received
        assert mail.tls
        assert mail.login == "mailer"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_without_tls_when_the_server_allows_it() -> None:
    with SmtpSink(credentials={"mailer": "s3cret"}) as sink:
        async with SmtpMailer(sink.host, sink.port, username="mailer", password="s3cret") as m:
            await m.send(an_email())

        (mail,) = sink.received
        assert not mail.tls
        assert mail.login == "mailer"


# -- failures --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["MAIL", "RCPT", "DATA"])
async def test_a_4xx_reply_is_transient_and_the_connection_stays_usable(
    sink: SmtpSink, mailer: SmtpMailer, command: str
) -> None:
    sink.reply_next(command, "451 4.3.0 Try again later")  # type: ignore[arg-type]

    with pytest.raises(TransientError) as caught:
        await mailer.send(an_email())

    assert caught.value.reason == "smtp_4xx"
    assert "451" in str(caught.value)
    assert isinstance(caught.value.__cause__, aiosmtplib.SMTPException)
    await mailer.send(an_email())
    assert len(sink.received) == 1
    assert sink.connections == 1


@pytest.mark.parametrize(
    ("command", "reply", "reason"),
    [
        ("RCPT", "550 5.1.1 No such user here", "invalid_recipient"),
        ("DATA", "554 5.6.0 Message rejected", "smtp_rejected"),
        ("MAIL", "553 5.7.1 Sender not allowed", "smtp_rejected"),
    ],
)
async def test_a_5xx_reply_is_permanent(
    sink: SmtpSink, mailer: SmtpMailer, command: str, reply: str, reason: str
) -> None:
    sink.reply_next(command, reply)  # type: ignore[arg-type]

    with pytest.raises(PermanentError) as caught:
        await mailer.send(an_email())

    assert caught.value.reason == reason
    assert sink.received == []


async def test_a_server_that_is_down_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async with SmtpMailer("127.0.0.1", port, timeout=2) as mailer:
        with pytest.raises(TransientError) as caught:
            await mailer.send(an_email())

    assert caught.value.reason == "smtp_unavailable"


async def test_a_server_that_never_greets_times_out_as_transient() -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()

        async with SmtpMailer(host, port, timeout=0.3) as mailer:
            with pytest.raises(TransientError) as caught:
                await mailer.send(an_email())

    assert caught.value.reason == "smtp_unavailable"
    assert isinstance(caught.value.__cause__, aiosmtplib.SMTPTimeoutError)


# -- after DATA: the server may have the mail -------------------------------------


async def test_a_connection_dropped_after_data_is_not_sent_again(
    sink: SmtpSink, mailer: SmtpMailer
) -> None:
    email = an_email()
    sink.drop_after_data(1)

    with pytest.raises(OutcomeUnknown) as caught:
        await mailer.send(email)

    assert caught.value.reason == "smtp_outcome_unknown"
    assert email.message_id in str(caught.value)  # what an operator looks up
    assert len(sink.received) == 1  # it did arrive, once: no blind resend
    await mailer.send(an_email())  # the next mail goes on a fresh connection
    assert len(sink.received) == 2


async def test_no_reply_after_data_within_the_timeout_is_not_sent_again(sink: SmtpSink) -> None:
    sink.after_data = lambda mail: time.sleep(1.0)  # the 250 comes after the deadline

    async with SmtpMailer(sink.host, sink.port, timeout=0.3) as mailer:
        with pytest.raises(OutcomeUnknown) as caught:
            await mailer.send(an_email())

    assert isinstance(caught.value.__cause__, aiosmtplib.SMTPTimeoutError)
    await asyncio.sleep(1.0)
    assert len(sink.received) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_wrong_credentials_are_transient_auth_failures() -> None:
    with SmtpSink(credentials={"mailer": "s3cret"}) as sink:
        async with SmtpMailer(sink.host, sink.port, username="mailer", password="nope") as m:
            with pytest.raises(TransientError) as caught:
                await m.send(an_email())

    assert caught.value.reason == "smtp_auth_failed"


async def test_a_closed_mailer_refuses_to_send(sink: SmtpSink) -> None:
    mailer = SmtpMailer(sink.host, sink.port)
    await mailer.send(an_email())
    await mailer.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await mailer.send(an_email())


# -- the error map ---------------------------------------------------------------


def aiosmtplib_exceptions() -> list[type[BaseException]]:
    exported = [getattr(aiosmtplib.errors, name) for name in aiosmtplib.errors.__all__]
    exported += [
        obj
        for name in aiosmtplib.__all__
        if inspect.isclass(obj := getattr(aiosmtplib, name)) and issubclass(obj, BaseException)
    ]
    return sorted(set(exported), key=lambda cls: cls.__name__)


def instances_of(cls: type[BaseException]) -> list[BaseException]:
    """Examples of ``cls`` as aiosmtplib raises them, one per reply class."""
    if issubclass(cls, aiosmtplib.SMTPRecipientsRefused):
        return [
            cls([aiosmtplib.SMTPRecipientRefused(code, "no", "a@example.com")])
            for code in (451, 550)
        ]
    if issubclass(cls, aiosmtplib.SMTPResponseException):
        extra = ("a@example.com",) if len(inspect.signature(cls).parameters) == 3 else ()
        return [cls(code, "reply", *extra) for code in (421, 451, 550, 554)]
    return [cls("something went wrong")]


@pytest.mark.parametrize("cls", aiosmtplib_exceptions(), ids=lambda cls: cls.__name__)
def test_every_aiosmtplib_exception_is_mapped(cls: type[BaseException]) -> None:
    assert cls in RULES, f"{cls.__name__} has no rule in email_consumer.mailer.RULES"
    for exc in instances_of(cls):
        assert isinstance(smtp_error(exc), TransientError | PermanentError)


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (ConnectionRefusedError(111, "refused"), TransientError, "smtp_unavailable"),
        (ConnectionResetError(104, "reset"), TransientError, "smtp_unavailable"),
        (TimeoutError(), TransientError, "smtp_unavailable"),
        (aiosmtplib.SMTPServerDisconnected("gone"), TransientError, "smtp_unavailable"),
        (aiosmtplib.SMTPConnectError("refused"), TransientError, "smtp_unavailable"),
        (aiosmtplib.SMTPReadTimeoutError("slow"), TransientError, "smtp_unavailable"),
        (aiosmtplib.SMTPConnectResponseError(554, "go away"), TransientError, "smtp_unavailable"),
        (aiosmtplib.SMTPAuthenticationError(535, "bad"), TransientError, "smtp_auth_failed"),
        (aiosmtplib.SMTPDataError(451, "later"), TransientError, "smtp_4xx"),
        (aiosmtplib.SMTPDataError(554, "spam"), PermanentError, "smtp_rejected"),
        (aiosmtplib.SMTPSenderRefused(421, "closing", "s@x.org"), TransientError, "smtp_4xx"),
        (aiosmtplib.SMTPSenderRefused(553, "no", "s@x.org"), PermanentError, "smtp_rejected"),
        (
            aiosmtplib.SMTPRecipientRefused(550, "no", "a@x.org"),
            PermanentError,
            "invalid_recipient",
        ),
        (aiosmtplib.SMTPResponseException(-1, "garbled"), TransientError, "smtp_protocol"),
        (aiosmtplib.SMTPNotSupported("SMTPUTF8"), PermanentError, "smtp_unsupported"),
        (aiosmtplib.SMTPException("odd"), TransientError, "smtp_error"),
        (UnicodeEncodeError("ascii", "ö", 0, 1, "no"), PermanentError, "invalid_recipient"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_errors_map_as_the_module_docstring_says(
    exc: BaseException, kind: type[Exception], reason: str
) -> None:
    error = smtp_error(exc)

    assert type(error) is kind
    assert error.reason == reason


@pytest.mark.parametrize(
    ("codes", "kind", "reason"),
    [
        ((450, 451), TransientError, "smtp_4xx"),
        ((451, 550), PermanentError, "invalid_recipient"),
        ((550, 553), PermanentError, "invalid_recipient"),
    ],
)
def test_refused_recipients_are_transient_only_if_all_refusals_are_4xx(
    codes: tuple[int, ...], kind: type[Exception], reason: str
) -> None:
    refusals = [aiosmtplib.SMTPRecipientRefused(c, "no", f"{c}@x.org") for c in codes]

    error = smtp_error(aiosmtplib.SMTPRecipientsRefused(refusals))

    assert type(error) is kind
    assert error.reason == reason


# -- the fake --------------------------------------------------------------------


async def test_the_recording_mailer_records_and_fails_on_request() -> None:
    fake = RecordingMailer()
    fake.fail_next(TransientError("down", reason="smtp_unavailable"))

    with pytest.raises(TransientError):
        await fake.send(an_email())
    reply = await fake.send(an_email("Grace Hopper"))

    assert reply == "2.0.0 OK: queued as recorded-1"
    assert [sent.recipients for sent in fake.sent] == [("ada@example.com",)]
