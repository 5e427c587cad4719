"""An announcement to 2,000 attendees, with the email consumer killed (SIGKILL) halfway.

Every going attendee gets the email, and the announcement's counts end at
2,000 sent and none queued. The messages the killed process had handled but
not acked come back, and the inbox keeps them from being sent again. What no
consumer can promise over SMTP: a send the server accepted in the moment
before the process recorded it (one INSERT) is sent again after the crash.
So copies are allowed only within that window: at most one per handler that
was running (``CONCURRENCY``), each with the same Message-ID, which lets a
receiving server that deduplicates show it once. The attendees are loaded with COPY (an
account made through the API costs an argon2 hash); the announcement is
posted through the API, fanned out by the scheduler in batches, published by
the relay and sent by ``python -m email_consumer`` in a process of its own,
which is killed without warning once some mails are out and started again.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from typing import Any

import asyncpg
import pytest

from calendar_service.db.session import create_engine
from calendar_service.scheduler import Scheduler
from devtools.env import EnvSettings
from tests.support.api import api_client, create_event, register_with_issued_token
from tests.support.email_consumer import email_consumer_process, email_settings
from tests.support.pipeline import calendar_settings_for, running_followups, running_relay
from tests.support.polling import until
from tests.support.services import own_database, own_vhost
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

ATTENDEES = 2_000
BATCH_SIZE = 500
KILL_AFTER = 400  # mails received before the consumer is killed
CONCURRENCY = 8  # handlers at once in the consumer; bounds the sends in doubt at the kill
#: A phase fails once nothing moved for this long (a process starting on a loaded machine
#: included), however long it has been moving: its speed depends on the machine, not on us.
STALL_S = 60
#: ...and it may take this long in all; the two phases fit in the test's own timeout.
PHASE_S = 240


async def seed_going_attendees(dsn: str, event_id: str, count: int) -> list[str]:
    """``count`` users going to the event, in two COPYs; returns their addresses."""
    tag = uuid.uuid4().hex[:8]
    users = [
        (uuid.uuid4(), f"guest-{n}-{tag}@example.com", f"Guest {n}", "not-a-hash")
        for n in range(count)
    ]
    rsvps = [(uuid.uuid4(), uuid.UUID(event_id), user[0], "going") for user in users]
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.copy_records_to_table(
                "users", records=users, columns=["id", "email", "name", "password_hash"]
            )
            await connection.copy_records_to_table(
                "rsvps", records=rsvps, columns=["id", "event_id", "user_id", "status"]
            )
    finally:
        await connection.close()
    return [user[1] for user in users]


@pytest.mark.timeout(600)
async def test_an_announcement_to_2000_attendees_sends_each_one_email_despite_a_killed_consumer(
    env_settings: EnvSettings,
) -> None:
    async with own_database(env_settings) as url, own_vhost(env_settings) as broker:
        settings = calendar_settings_for(url, broker, announcement_batch_size=BATCH_SIZE)
        engine = create_engine(settings)
        try:
            with SmtpSink() as mail:
                consumer = email_settings(
                    broker, url, mail, concurrency=CONCURRENCY, log_level="WARNING"
                )
                async with (
                    api_client(settings) as client,
                    running_relay(settings),
                    running_followups(settings),
                ):
                    organizer = await register_with_issued_token(client, settings)
                    event = await create_event(client, organizer, title="Town hall")
                    addresses = await seed_going_attendees(
                        settings.asyncpg_dsn, event["id"], ATTENDEES
                    )
                    posted = await client.post(
                        f"/events/{event['id']}/announcements",
                        json={
                            "subject": "Doors open at 6",
                            "body": "See you.",
                            "channels": ["email"],
                        },
                        headers=organizer["headers"],
                    )
                    assert posted.status_code == 202, posted.text
                    url_of_progress = f"/events/{event['id']}/announcements/{posted.json()['id']}"

                    async def mails() -> int:
                        return len(mail.received)

                    async with email_consumer_process(consumer) as first:
                        scheduler = Scheduler(engine, offsets_s=(3600,), batch_size=BATCH_SIZE)
                        assert await scheduler.fan_out_announcements() == ATTENDEES
                        await until(
                            mails,
                            lambda count: count >= KILL_AFTER,
                            timeout=PHASE_S,
                            stall=STALL_S,
                            what=f"{KILL_AFTER} mails before the kill",
                        )
                        first.send_signal(signal.SIGKILL)
                        await first.wait()
                    sent_before_the_kill = len(mail.received)

                    async def progress() -> dict[str, Any]:
                        response = await client.get(url_of_progress, headers=organizer["headers"])
                        body: dict[str, Any] = response.json()
                        return body

                    async with email_consumer_process(consumer):
                        done = await until(
                            progress,
                            lambda p: p["counts"]["email"]["sent"] == ATTENDEES,
                            timeout=PHASE_S,
                            stall=STALL_S,
                            what="every announcement email reported sent",
                        )
        finally:
            await engine.dispose()

    assert sent_before_the_kill < ATTENDEES, "the consumer was killed mid-run"
    assert done["recipients"] == ATTENDEES
    assert done["counts"]["email"] == {"queued": 0, "sent": ATTENDEES, "failed": 0, "skipped": 0}
    sent = Counter((m.message["Message-ID"], m.rcpt_tos) for m in mail.received)
    assert len(sent) == ATTENDEES
    assert sorted(rcpt for _, (rcpt,) in sent) == sorted(addresses)  # one Message-ID each
    copies = sum(sent.values()) - ATTENDEES
    assert copies <= CONCURRENCY, f"{copies} copies: more than the sends in doubt at the kill"
