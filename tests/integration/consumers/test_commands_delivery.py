"""Commands end to end: API -> outbox -> relay -> notify.direct -> email consumer -> SMTP,
and the follow-up back to the calendar, on the real broker, database and mail server.

The module has a database and a vhost of its own (no other test's messages in
its queues), the relay and follow-up consumer running throughout, and starts
the email consumer where a test says so. The announcement fan-out is driven by
calling the scheduler's pass directly, as its loop would on a NOTIFY.
No push consumer exists on this branch yet: announcements are tested on the
email channel, and push commands only as far as the ``push.commands`` queue.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.scheduler import Scheduler
from devtools.env import EnvSettings
from email_consumer.config import Settings as EmailSettings
from shared.schemas import Attendee, EmailSend, EventSummary, NotificationCommand, parse_message
from tests.support.api import (
    api_client,
    create_event,
    post_rsvp,
    register,
    register_with_issued_token,
)
from tests.support.dlq import depth
from tests.support.email_consumer import email_settings, publish_as_calendar, running_email_consumer
from tests.support.pipeline import (
    calendar_settings_for,
    running_followups,
    running_relay,
    take_all,
)
from tests.support.polling import until
from tests.support.services import BrokerEnv, own_database, own_vhost
from tests.support.smtp import ReceivedMail, SmtpSink

pytestmark = pytest.mark.integration

#: Small batches, so three attendees take two transactions.
BATCH_SIZE = 2
#: outbox -> relay -> broker -> consumer -> SMTP -> follow-ups -> database, on a loaded machine.
ROUND_TRIP_S = 30
MAIL_DOMAIN = "rsvp.localhost"  # of the consumer's default MAIL_FROM
OTHER_QUEUES = (
    ("push", "push.commands"),
    ("push", "push.rsvp_events"),
    ("ops", "email.commands.dlq"),
    ("ops", "email.rsvp_events.dlq"),
    ("ops", "push.commands.dlq"),
    ("ops", "push.rsvp_events.dlq"),
    ("ops", "calendar.followups.dlq"),
)


@dataclass
class Pipeline:
    settings: Settings
    broker: BrokerEnv
    client: httpx.AsyncClient
    mail: SmtpSink
    scheduler: Scheduler
    database: asyncpg.Connection

    def email_settings(self, **overrides: Any) -> EmailSettings:
        return email_settings(self.broker, self.settings.database_url, self.mail, **overrides)

    def mails_with(self, header: str, value: object) -> list[ReceivedMail]:
        return [m for m in self.mail.received if m.message[header] == str(value)]

    async def mail_for(self, message_id: object) -> ReceivedMail:
        """Wait for the email sent for the message ``message_id``; the first if several."""

        async def sent() -> list[ReceivedMail]:
            return self.mails_with("Message-ID", message_id_header(message_id))

        mails = await until(sent, timeout=ROUND_TRIP_S, what=f"the email for {message_id}")
        return mails[0]


@pytest.fixture(scope="module")
async def pipeline(env_settings: EnvSettings) -> AsyncIterator[Pipeline]:
    async with own_database(env_settings) as url, own_vhost(env_settings) as broker:
        settings = calendar_settings_for(url, broker)
        engine = create_engine(settings)
        database = await asyncpg.connect(settings.asyncpg_dsn)
        try:
            with SmtpSink() as mail:
                async with (
                    api_client(settings) as client,
                    running_relay(settings),
                    running_followups(settings),
                ):
                    scheduler = Scheduler(engine, offsets_s=(3600,), batch_size=BATCH_SIZE)
                    yield Pipeline(settings, broker, client, mail, scheduler, database)
        finally:
            await database.close()
            await engine.dispose()


@pytest.fixture(scope="module")
async def organizer(pipeline: Pipeline) -> dict[str, Any]:
    return await register(pipeline.client, name="Olga <b>Organizer</b>")


async def attendee(pipeline: Pipeline, name: str) -> dict[str, Any]:
    return await register_with_issued_token(pipeline.client, pipeline.settings, name=name)


async def rsvp_notifications(
    pipeline: Pipeline, rsvp: dict[str, Any], user: dict[str, Any]
) -> dict[str, str]:
    response = await pipeline.client.get(f"/rsvps/{rsvp['id']}", headers=user["headers"])
    assert response.status_code == 200, response.text
    notifications: dict[str, str] = response.json()["notifications"]
    return notifications


async def progress(
    pipeline: Pipeline, event: dict[str, Any], announcement_id: str, organizer: dict[str, Any]
) -> dict[str, Any]:
    response = await pipeline.client.get(
        f"/events/{event['id']}/announcements/{announcement_id}", headers=organizer["headers"]
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def confirmation_sent(pipeline: Pipeline, rsvp: dict[str, Any], user: dict[str, Any]) -> None:
    """Run the email consumer until the RSVP's email shows as sent."""
    async with running_email_consumer(pipeline.email_settings()):
        await until(
            lambda: rsvp_notifications(pipeline, rsvp, user),
            lambda n: n["email"] == "sent",
            timeout=ROUND_TRIP_S,
            what=f"the confirmation of RSVP {rsvp['id']} reported sent",
        )


async def fan_out_until(
    pipeline: Pipeline,
    event: dict[str, Any],
    organizer: dict[str, Any],
    announcement_id: str,
    done: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """One scheduler pass, then the email consumer until the progress is ``done``."""
    async with running_email_consumer(pipeline.email_settings()):
        await pipeline.scheduler.fan_out_announcements()
        return await until(
            lambda: progress(pipeline, event, announcement_id, organizer),
            done,
            timeout=ROUND_TRIP_S,
            what=f"announcement {announcement_id} progress",
        )


def message_id_header(message_id: object) -> str:
    return f"<{message_id}@{MAIL_DOMAIN}>"


async def queued(broker: BrokerEnv, user: str, queue: str, count: int) -> None:
    """Wait until ``count`` messages (or more: the test's assertions say) wait in ``queue``."""
    await until(
        lambda: depth(broker, queue, user),
        lambda n: n >= count,
        timeout=ROUND_TRIP_S,
        what=f"{count} messages in {queue}",
    )


async def ids_left_in_other_queues(broker: BrokerEnv) -> set[str]:
    """Message ids anywhere but email.commands and calendar.followups (taken)."""
    return {
        str(message.message_id)
        for user, queue in OTHER_QUEUES
        for message in await take_all(broker, user, queue)
    }


# --- resend ---------------------------------------------------------------------------------


async def test_a_resend_goes_to_email_commands_only_and_sends_one_email_marked_sent(
    pipeline: Pipeline, organizer: dict[str, Any]
) -> None:
    guest = await attendee(pipeline, "Grace Guest")
    event = await create_event(pipeline.client, organizer)
    rsvp = (await post_rsvp(pipeline.client, event, guest)).json()
    await confirmation_sent(pipeline, rsvp, guest)

    resent = await pipeline.client.post(f"/rsvps/{rsvp['id']}/resend", headers=guest["headers"])
    assert resent.status_code == 202
    command_id = resent.json()["command_id"]
    # (that the status is pending right after the 202 is test_api_commands' to show: here a
    # fast pipeline may already have reported it sent)
    await confirmation_sent(pipeline, rsvp, guest)  # the resent one's follow-up

    [mail] = pipeline.mails_with("Message-ID", message_id_header(command_id))  # one, not two
    assert mail.rcpt_tos == (guest["email"],)
    assert mail.message["Subject"] == f"You're going: {event['title']}"
    assert command_id not in await ids_left_in_other_queues(pipeline.broker)
    handled = await pipeline.database.fetch(
        "SELECT consumer FROM consumer_inbox WHERE message_id = $1", uuid.UUID(command_id)
    )
    assert [row["consumer"] for row in handled] == ["email/email.commands"]


# --- announcements --------------------------------------------------------------------------


async def test_an_announcement_reaches_every_going_attendee_once_with_the_organizers_text_escaped(
    pipeline: Pipeline, organizer: dict[str, Any]
) -> None:
    event = await create_event(pipeline.client, organizer, title="Picnic & <i>games</i>")
    going = [await attendee(pipeline, f"Going {n}") for n in range(3)]
    others = [await attendee(pipeline, "Maybe Mo"), await attendee(pipeline, "Declined Di")]
    for user in going:
        assert (await post_rsvp(pipeline.client, event, user, "going")).status_code == 201
    await post_rsvp(pipeline.client, event, others[0], "maybe")
    await post_rsvp(pipeline.client, event, others[1], "declined")
    correlation_id = uuid.uuid4()

    posted = await pipeline.client.post(
        f"/events/{event['id']}/announcements",
        json={
            "subject": "Bring <b>snacks</b> & drinks",
            "body": 'Hello!\n\n<script>alert("x")</script> & <a href="http://evil.test">win</a>',
            "channels": ["email"],
        },
        headers={**organizer["headers"], "X-Correlation-ID": str(correlation_id)},
    )
    assert posted.status_code == 202, posted.text
    announcement_id = posted.json()["id"]
    done = await fan_out_until(
        pipeline, event, organizer, announcement_id, lambda p: p["counts"]["email"]["sent"] == 3
    )

    assert done["fanned_out"] is True
    assert done["recipients"] == 3
    assert done["counts"] == {"email": {"queued": 0, "sent": 3, "failed": 0, "skipped": 0}}
    mails = pipeline.mails_with("X-Correlation-ID", correlation_id)
    assert sorted(m.rcpt_tos[0] for m in mails) == sorted(u["email"] for u in going)
    for mail in mails:
        message = mail.message
        assert message["Subject"] == "Bring <b>snacks</b> & drinks"  # a header is not HTML
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "<script>" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp;" in html
        assert "<a href" not in html
        assert "Olga &lt;b&gt;Organizer&lt;/b&gt;" in html
        assert "Picnic &amp; &lt;i&gt;games&lt;/i&gt;" in html
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert '<script>alert("x")</script>' in text  # plain text stays as written


async def test_an_announcement_on_both_channels_queues_a_push_command_per_going_attendee(
    pipeline: Pipeline, organizer: dict[str, Any]
) -> None:
    event = await create_event(pipeline.client, organizer)
    going = [await attendee(pipeline, f"Pushed {n}") for n in range(2)]
    for user in going:
        await post_rsvp(pipeline.client, event, user, "going")
    await take_all(pipeline.broker, "push", "push.rsvp_events")  # their RSVP events
    posted = await pipeline.client.post(
        f"/events/{event['id']}/announcements",
        json={"subject": "Hi", "body": "Both ways.", "channels": ["email", "push"]},
        headers=organizer["headers"],
    )
    announcement_id = posted.json()["id"]

    done = await fan_out_until(
        pipeline, event, organizer, announcement_id, lambda p: p["counts"]["email"]["sent"] == 2
    )

    # no push consumer on this branch: the push commands wait in their queue
    assert done["counts"]["push"] == {"queued": 2, "sent": 0, "failed": 0, "skipped": 0}
    # the emails being reported says nothing of where the relay is with the push commands
    await queued(pipeline.broker, "push", "push.commands", 2)
    pushes = [
        parse_message(m.body) for m in await take_all(pipeline.broker, "push", "push.commands")
    ]
    assert {p.type for p in pushes} == {"push.send"}
    assert sorted(str(p.data.recipient.user_id) for p in pushes) == sorted(u["id"] for u in going)
    assert {str(p.data.announcement_id) for p in pushes} == {announcement_id}


async def test_a_refused_announcement_email_is_dead_lettered_and_counted_failed(
    pipeline: Pipeline, organizer: dict[str, Any]
) -> None:
    event = await create_event(pipeline.client, organizer)
    guest = await attendee(pipeline, "Bounced Bea")
    rsvp = (await post_rsvp(pipeline.client, event, guest, "going")).json()
    await confirmation_sent(pipeline, rsvp, guest)  # so the refusal meets the announcement
    posted = await pipeline.client.post(
        f"/events/{event['id']}/announcements",
        json={"subject": "Hi", "body": "Nobody home.", "channels": ["email"]},
        headers=organizer["headers"],
    )
    announcement_id = posted.json()["id"]
    pipeline.mail.reply_next("RCPT", "550 5.1.1 No such user")

    done = await fan_out_until(
        pipeline, event, organizer, announcement_id, lambda p: p["counts"]["email"]["failed"] == 1
    )

    assert done["counts"]["email"] == {"queued": 0, "sent": 0, "failed": 1, "skipped": 0}
    # the consumer publishes email.failed first, then dead-letters the command
    await queued(pipeline.broker, "ops", "email.commands.dlq", 1)
    [dead] = await take_all(pipeline.broker, "ops", "email.commands.dlq")
    assert dead.headers["x-fault-reason"] == "invalid_recipient"
    assert parse_message(dead.body).data.announcement_id == uuid.UUID(announcement_id)


# --- the consumer side, whatever the API let through ----------------------------------------


def announcement_command(*, name: str, subject: str) -> EmailSend:
    """An announcement command as a careless producer might write it."""
    command = NotificationCommand(
        kind="announcement",
        recipient=Attendee(
            user_id=uuid.uuid4(), email=f"{uuid.uuid4().hex[:8]}@example.com", name=name
        ),
        event=EventSummary(
            event_id=uuid.uuid4(), title="Header test", starts_at="2031-01-01T10:00:00Z"
        ),
        announcement_id=uuid.uuid4(),
        subject=subject,
        body="Nothing to see.",
    )
    return EmailSend.first(command, producer="tests")


async def test_line_breaks_in_a_commands_subject_or_name_inject_no_header(
    pipeline: Pipeline,
) -> None:
    command = announcement_command(
        name="Eve\r\nBcc: name@evil.test", subject="Hi\r\nBcc: subject@evil.test\r\n\r\nbody"
    )

    await publish_as_calendar(pipeline.broker, command)
    async with running_email_consumer(pipeline.email_settings()):
        mail = await pipeline.mail_for(command.message_id)

    assert mail.rcpt_tos == (command.data.recipient.email,)
    headers = mail.data.split(b"\r\n\r\n", 1)[0]
    assert not [line for line in headers.split(b"\r\n") if line.lower().startswith(b"bcc")]
    message = mail.message
    assert message["Bcc"] is None
    assert message["Subject"] == "Hi Bcc: subject@evil.test body"
    assert message["To"] == f'"Eve Bcc: name@evil.test" <{command.data.recipient.email}>'


async def test_the_same_command_delivered_twice_sends_one_email(pipeline: Pipeline) -> None:
    command = announcement_command(name="Dora Duplicate", subject="Once")
    sentinel = announcement_command(name="Sam Sentinel", subject="After")

    for message in (command, command, sentinel):
        await publish_as_calendar(pipeline.broker, message)
    # one at a time, in order: when the sentinel is sent, both copies were handled
    async with running_email_consumer(pipeline.email_settings(prefetch=1, concurrency=1)):
        await pipeline.mail_for(sentinel.message_id)

    assert len(pipeline.mails_with("Message-ID", message_id_header(command.message_id))) == 1


async def test_an_announcement_to_an_event_nobody_is_going_to_is_done_with_no_recipients(
    pipeline: Pipeline, organizer: dict[str, Any]
) -> None:
    event = await create_event(pipeline.client, organizer)
    await post_rsvp(pipeline.client, event, await attendee(pipeline, "Maybe May"), "maybe")
    posted = await pipeline.client.post(
        f"/events/{event['id']}/announcements",
        json={"subject": "Anyone?", "body": "Hello?", "channels": ["email"]},
        headers=organizer["headers"],
    )

    assert await pipeline.scheduler.fan_out_announcements() == 0

    done = await progress(pipeline, event, posted.json()["id"], organizer)
    assert done["fanned_out"] is True
    assert done["recipients"] == 0
    assert done["counts"] == {"email": {"queued": 0, "sent": 0, "failed": 0, "skipped": 0}}
