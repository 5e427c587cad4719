"""The scheduler's reminders, driven by a fake clock against the real database.

What the issue promises: exactly one reminder per (event, attendee, offset)
even with two schedulers at once and across restarts; none for an RSVP
cancelled or declined before it is due; a moved event moves its reminders; no
late reminder once the event has started; the scheduler sleeps until the next
due reminder and wakes on NOTIFY, never scanning every second.

Each test's event starts on a day of its own, hundreds of days ahead, so the
fake clock's window holds that event alone even though the run's database is
shared with every other test.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from calendar_service.scheduler import Scheduler, SchedulerService
from tests.support.api import create_event, post_rsvp, register, register_with_issued_token
from tests.support.polling import until
from tests.support.services import as_role

pytestmark = pytest.mark.integration

DAY, HOUR = 24 * 3600, 3600
OFFSETS = (DAY, HOUR)
#: a far-future day per test: no other test's event falls in its windows
_days_ahead = itertools.count(400, 7)

REMINDERS_OF = "SELECT user_id, offset_s FROM reminders WHERE event_id = $1"
COMMANDS_OF = """
SELECT message_type, exchange, routing_key, body FROM outbox
WHERE message_type IN ('email.send', 'push.send')
  AND (convert_from(body, 'UTF8')::jsonb #>> '{data,event,event_id}') = $1
  AND (convert_from(body, 'UTF8')::jsonb #>> '{data,kind}') = 'reminder'
"""


class FakeClock:
    """A clock tests move by hand; every scheduler of a test shares one."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture(scope="module")
async def engine(calendar_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The scheduler's engine, as its own database role."""
    url = as_role(calendar_settings.database_url, "rsvp_scheduler")
    engine = create_engine(calendar_settings.model_copy(update={"database_url": url}))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def database(calendar_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(calendar_settings.asyncpg_dsn)
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def organizer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Rhea Reminder")


@pytest.fixture(scope="module")
async def people(client: httpx.AsyncClient, calendar_settings: Settings) -> list[dict[str, Any]]:
    return [
        await register_with_issued_token(client, calendar_settings, name=f"Attendee {n}")
        for n in range(12)
    ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


def scheduler(engine: AsyncEngine, clock: FakeClock, **options: Any) -> Scheduler:
    return Scheduler(engine, offsets_s=OFFSETS, clock=clock, **options)


async def far_event(client: httpx.AsyncClient, organizer: dict[str, Any]) -> dict[str, Any]:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=next(_days_ahead))
    return await create_event(client, organizer, starts_at=starts.isoformat())


def starts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["starts_at"])


async def answer_all(
    client: httpx.AsyncClient, event: dict[str, Any], people: list[dict[str, Any]], status: str
) -> None:
    for person in people:
        response = await post_rsvp(client, event, person, status)
        assert response.status_code in (200, 201), response.text


async def reminders_of(database: asyncpg.Connection, event: dict[str, Any]) -> set[tuple[str, int]]:
    rows = await database.fetch(REMINDERS_OF, uuid.UUID(event["id"]))
    return {(str(r["user_id"]), r["offset_s"]) for r in rows}


async def commands_of(database: asyncpg.Connection, event: dict[str, Any]) -> list[asyncpg.Record]:
    return await database.fetch(COMMANDS_OF, event["id"])


def ids(people: list[dict[str, Any]]) -> set[str]:
    return {p["id"] for p in people}


# --- exactly once -----------------------------------------------------------------------------


async def test_two_schedulers_sharing_a_clock_send_one_reminder_per_attendee_and_offset(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    going, maybe, declined = people[:8], people[8:10], people[10:]
    await answer_all(client, event, going, "going")
    await answer_all(client, event, maybe, "maybe")
    await answer_all(client, event, declined, "declined")
    first, second = scheduler(engine, clock, batch_size=3), scheduler(engine, clock, batch_size=3)

    clock.at(starts(event) - timedelta(hours=25))
    assert await asyncio.gather(first.send_due_reminders(), second.send_due_reminders()) == [0, 0]

    clock.at(starts(event) - timedelta(hours=23))
    sent = await asyncio.gather(first.send_due_reminders(), second.send_due_reminders())
    assert sum(sent) == len(going)
    assert await reminders_of(database, event) == {(g, DAY) for g in ids(going)}

    clock.at(starts(event) - timedelta(minutes=59))
    sent = await asyncio.gather(first.send_due_reminders(), second.send_due_reminders())
    assert sum(sent) == len(going)
    assert await reminders_of(database, event) == {(g, o) for g in ids(going) for o in OFFSETS}

    commands = await commands_of(database, event)
    by_route = sorted((c["message_type"], c["exchange"], c["routing_key"]) for c in commands)
    assert by_route == sorted(
        [("email.send", "notify.direct", "email.commands")] * (2 * len(going))
        + [("push.send", "notify.direct", "push.commands")] * (2 * len(going))
    )


async def test_a_restarted_scheduler_sends_nothing_again(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:3], "going")
    clock.at(starts(event) - timedelta(hours=12))
    assert await scheduler(engine, clock).send_due_reminders() == 3

    restarted = scheduler(engine, clock)
    clock.at(starts(event) - timedelta(hours=11))

    assert await restarted.send_due_reminders() == 0
    assert len(await commands_of(database, event)) == 3 * 2


# --- who gets one ------------------------------------------------------------------------------


async def test_a_cancelled_or_declined_rsvp_gets_no_reminder(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    stays, cancels, declines = people[0], people[1], people[2]
    await answer_all(client, event, [stays, cancels, declines], "going")
    cancelled = await client.delete(f"/events/{event['id']}/rsvps/me", headers=cancels["headers"])
    assert cancelled.status_code == 200, cancelled.text
    await answer_all(client, event, [declines], "declined")

    clock.at(starts(event) - timedelta(hours=12))
    await scheduler(engine, clock).send_due_reminders()

    assert await reminders_of(database, event) == {(stays["id"], DAY)}


async def test_after_downtime_only_the_nearest_reminder_goes_out(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:2], "going")

    # down through the 24 h reminder, back 30 minutes before the start
    clock.at(starts(event) - timedelta(minutes=30))
    await scheduler(engine, clock).send_due_reminders()

    assert await reminders_of(database, event) == {(p["id"], HOUR) for p in people[:2]}
    windows = await database.fetch(
        "SELECT offset_s, superseded FROM reminder_windows WHERE event_id = $1",
        uuid.UUID(event["id"]),
    )
    assert {(w["offset_s"], w["superseded"]) for w in windows} == {(DAY, True), (HOUR, False)}


async def test_a_finished_window_is_not_read_again(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:3], "going")
    clock.at(starts(event) - timedelta(hours=20))
    sched = scheduler(engine, clock, batch_size=2)
    assert await sched.send_due_reminders() == 3

    async with UnitOfWork(engine) as uow:
        due = await uow.reminders.due_windows(now=clock(), offsets=OFFSETS, limit=1000)

    assert uuid.UUID(event["id"]) not in {w["event_id"] for w in due}
    assert not sched.unfinished


async def test_an_rsvp_made_after_a_reminder_was_due_gets_only_the_later_ones(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    # the event starts in 3 hours (real time): its 24 h reminder was due before anyone answered
    soon = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    event = await create_event(client, organizer, starts_at=soon.isoformat())
    await answer_all(client, event, people[:2], "going")

    clock.at(soon - timedelta(minutes=50))
    await scheduler(engine, clock).send_due_reminders()

    assert await reminders_of(database, event) == {(p["id"], HOUR) for p in people[:2]}


async def test_an_event_that_has_started_gets_no_late_reminder(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:2], "going")

    # the scheduler was down through both reminders and comes back after the start
    clock.at(starts(event) + timedelta(minutes=1))

    assert await scheduler(engine, clock).send_due_reminders() == 0
    assert await reminders_of(database, event) == set()


async def test_moving_an_event_moves_its_pending_reminders(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:2], "going")
    old_start = starts(event)
    new_start = old_start + timedelta(days=2)
    moved = await client.patch(
        f"/events/{event['id']}",
        json={"starts_at": new_start.isoformat()},
        headers=organizer["headers"],
    )
    assert moved.status_code == 200, moved.text
    sched = scheduler(engine, clock)

    clock.at(old_start - timedelta(minutes=30))  # both old reminders would be due now
    assert await sched.send_due_reminders() == 0

    clock.at(new_start - timedelta(hours=23))
    assert await sched.send_due_reminders() == 2
    assert await reminders_of(database, event) == {(p["id"], DAY) for p in people[:2]}


# --- when it wakes -----------------------------------------------------------------------------


async def test_the_scheduler_sleeps_until_the_next_reminder_falls_due(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    organizer: dict[str, Any],
    clock: FakeClock,
) -> None:
    event = await far_event(client, organizer)
    sched = scheduler(engine, clock, max_sleep_s=3600)

    clock.at(starts(event) - timedelta(hours=24, minutes=10))
    assert await sched.seconds_until_next_due() == pytest.approx(600, abs=1)

    clock.at(starts(event) - timedelta(hours=1, minutes=5))
    assert await sched.seconds_until_next_due() == pytest.approx(300, abs=1)

    clock.at(starts(event) - timedelta(days=30))
    assert await sched.seconds_until_next_due() == 3600  # capped: the safety net


async def fanned_out(database: asyncpg.Connection, announcement_id: uuid.UUID) -> None:
    async with asyncio.timeout(30):
        while not await database.fetchval(
            "SELECT fanned_out_at IS NOT NULL FROM announcements WHERE id = $1", announcement_id
        ):
            await asyncio.sleep(0.1)


async def passed_once(sched: Scheduler) -> None:
    async with asyncio.timeout(10):
        while sched.metrics.passes._value.get() < 1:
            await asyncio.sleep(0.05)


async def listening(database: asyncpg.Connection) -> set[int]:
    """The backends LISTENing on the scheduler channel, by pid."""
    rows = await database.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%scheduler%'"
    )
    return {row["pid"] for row in rows}


async def new_listeners(database: asyncpg.Connection, known: set[int], what: str) -> set[int]:
    """Wait until a LISTEN backend not in ``known`` shows; return every such one."""

    async def new() -> set[int]:
        return await listening(database) - known

    return await until(new, timeout=30, interval=0.1, what=what)


async def test_a_running_scheduler_wakes_on_notify_not_on_its_timer(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    calendar_settings: Settings,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:2], "going")
    settings = calendar_settings
    stop = asyncio.Event()
    sched = Scheduler(engine, offsets_s=OFFSETS, max_sleep_s=600.0)
    running = asyncio.create_task(SchedulerService(sched, settings.asyncpg_dsn).run(stop))
    try:
        await passed_once(sched)  # it has passed and sleeps (up to 600 s) until a NOTIFY
        response = await client.post(
            f"/events/{event['id']}/announcements",
            json={"subject": "Doors at 7", "body": "See you there.", "channels": ["email"]},
            headers=organizer["headers"],
        )
        assert response.status_code == 202, response.text
        announcement_id = uuid.UUID(response.json()["id"])

        await fanned_out(database, announcement_id)  # far sooner than the 600 s sleep
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)

    recipients = await database.fetchval(
        "SELECT recipients FROM announcements WHERE id = $1", announcement_id
    )
    assert recipients == 2


async def test_the_scheduler_listens_again_after_its_connection_is_killed(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    calendar_settings: Settings,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    people: list[dict[str, Any]],
) -> None:
    event = await far_event(client, organizer)
    await answer_all(client, event, people[:1], "going")
    # a listener of an earlier test's scheduler may still be on its way out
    others = await listening(database)
    stop = asyncio.Event()
    sched = Scheduler(engine, offsets_s=OFFSETS, max_sleep_s=600.0)
    running = asyncio.create_task(SchedulerService(sched, calendar_settings.asyncpg_dsn).run(stop))
    try:
        await passed_once(sched)
        # the listener connects beside the scheduler's first pass, not before it
        listeners = await new_listeners(database, others, "the scheduler's LISTEN")
        assert len(listeners) == 1, listeners
        (listener,) = listeners
        assert await database.fetchval("SELECT pg_terminate_backend($1)", listener)
        # reconnected: LISTEN is back on a new backend (the killed one may linger a moment)
        await new_listeners(database, others | listeners, "the scheduler to LISTEN again")
        response = await client.post(
            f"/events/{event['id']}/announcements",
            json={"subject": "Still here", "body": "Listening again.", "channels": ["email"]},
            headers=organizer["headers"],
        )
        assert response.status_code == 202, response.text
        announcement_id = uuid.UUID(response.json()["id"])
        await fanned_out(database, announcement_id)
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=10)
