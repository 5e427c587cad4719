"""The event's RSVP counters: moved by a deferred trigger at COMMIT (migration 0002).

What the design promises: an open transaction that changed an RSVP holds no
lock on its event's row, so the RSVPs of one event never queue behind each
other's round trips; the counters always equal a recount of the RSVP rows;
and capacity is refused at COMMIT by ck_events_within_capacity.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from calendar_service.domain import Answer
from calendar_service.usecases.rsvps import stage_answer
from tests.support.api import create_event, post_rsvp, register, register_with_issued_token

pytestmark = pytest.mark.integration

#: Far above a commit's duration on a loaded 2-core machine, far below "forever". The
#: control test holds the lock for good, so it proves the same bound however large it is.
NO_WAIT = 10.0

COUNTERS = """
SELECT going_seats, going_count, maybe_count, declined_count FROM events WHERE id = $1
"""
RECOUNT = """
SELECT coalesce(sum(1 + guests) FILTER (WHERE status = 'going'), 0) AS going_seats,
       count(*) FILTER (WHERE status = 'going') AS going_count,
       count(*) FILTER (WHERE status = 'maybe') AS maybe_count,
       count(*) FILTER (WHERE status = 'declined') AS declined_count
FROM rsvps WHERE event_id = $1
"""
SET_STATUS = "UPDATE rsvps SET status = $2 WHERE id = $1"


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
async def two_sessions(
    calendar_settings: Settings,
) -> AsyncIterator[tuple[asyncpg.Connection, asyncpg.Connection]]:
    """Two raw sessions on the test database; closing one rolls back what it left open."""
    first = await asyncpg.connect(calendar_settings.asyncpg_dsn)
    second = await asyncpg.connect(calendar_settings.asyncpg_dsn)
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture(scope="module")
async def organizer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Olga Organizer")


@pytest.fixture(scope="module")
async def crowd(client: httpx.AsyncClient, calendar_settings: Settings) -> list[dict[str, Any]]:
    return [
        await register_with_issued_token(client, calendar_settings, name=f"Counter {n}")
        for n in range(10)
    ]


async def counters(database: asyncpg.Connection, event: dict[str, Any]) -> dict[str, int]:
    row = await database.fetchrow(COUNTERS, uuid.UUID(event["id"]))
    assert row is not None
    return dict(row)


def expect(*, seats: int = 0, going: int = 0, maybe: int = 0, declined: int = 0) -> dict[str, int]:
    return {
        "going_seats": seats,
        "going_count": going,
        "maybe_count": maybe,
        "declined_count": declined,
    }


async def answered(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any], status: str
) -> uuid.UUID:
    response = await post_rsvp(client, event, user, status)
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


# --- no event-row lock before COMMIT --------------------------------------------------------


async def test_an_open_rsvp_change_does_not_stop_another_rsvp_of_the_event_from_committing(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
    two_sessions: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    event = await create_event(client, organizer, capacity=10)
    first_rsvp = await answered(client, event, crowd[0], "going")
    second_rsvp = await answered(client, event, crowd[1], "going")
    holder, other = two_sessions
    open_change = holder.transaction()
    await open_change.start()
    await holder.execute(SET_STATUS, first_rsvp, "maybe")

    async def change_and_commit() -> None:
        async with other.transaction():
            await other.execute(SET_STATUS, second_rsvp, "declined")

    await asyncio.wait_for(change_and_commit(), timeout=NO_WAIT)

    assert await counters(database, event) == expect(seats=1, going=1, declined=1)
    await open_change.commit()
    assert await counters(database, event) == expect(maybe=1, declined=1)


async def test_moving_the_counters_before_commit_would_make_the_other_commit_wait(
    client: httpx.AsyncClient,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
    two_sessions: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    """The control for the test above: its probe does see an event-row lock when one is held."""
    event = await create_event(client, organizer)
    first_rsvp = await answered(client, event, crowd[0], "going")
    second_rsvp = await answered(client, event, crowd[1], "going")
    holder, other = two_sessions
    open_change = holder.transaction()
    await open_change.start()
    await holder.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the counters move now, not at COMMIT
    await holder.execute(SET_STATUS, first_rsvp, "maybe")
    await other.execute(f"SET lock_timeout = '{int(NO_WAIT * 1000)}ms'")

    with pytest.raises(asyncpg.exceptions.LockNotAvailableError):
        async with other.transaction():
            await other.execute(SET_STATUS, second_rsvp, "declined")

    await open_change.rollback()


async def test_an_rsvp_answered_through_the_service_locks_no_event_row_until_it_commits(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    calendar_settings: Settings,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
    two_sessions: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    event = await create_event(client, organizer, capacity=10)
    other_rsvp = await answered(client, event, crowd[1], "going")
    _, other = two_sessions
    engine = create_engine(calendar_settings)
    try:
        async with UnitOfWork(engine) as uow:
            user = await uow.users.by_id(uuid.UUID(crowd[0]["id"]))
            assert user is not None
            await stage_answer(
                uow, event_id=uuid.UUID(event["id"]), user=user, answer=Answer("going", 2)
            )

            async def change_and_commit() -> None:
                async with other.transaction():
                    await other.execute(SET_STATUS, other_rsvp, "maybe")

            await asyncio.wait_for(change_and_commit(), timeout=NO_WAIT)
            await uow.commit()
    finally:
        await engine.dispose()

    assert await counters(database, event) == expect(seats=3, going=1, maybe=1)


# --- capacity at COMMIT ---------------------------------------------------------------------


async def test_an_overbooking_change_is_accepted_by_its_statement_and_refused_at_commit(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
    two_sessions: tuple[asyncpg.Connection, asyncpg.Connection],
) -> None:
    event = await create_event(client, organizer, capacity=1)
    await answered(client, event, crowd[0], "going")
    hopeful = await answered(client, event, crowd[1], "maybe")
    session, _ = two_sessions
    change = session.transaction()
    await change.start()
    await session.execute(SET_STATUS, hopeful, "going")

    with pytest.raises(asyncpg.exceptions.CheckViolationError) as refused:
        await change.commit()

    assert refused.value.constraint_name == "ck_events_within_capacity"
    assert await counters(database, event) == expect(seats=1, going=1, maybe=1)
    assert await database.fetchval("SELECT status FROM rsvps WHERE id = $1", hopeful) == "maybe"


# --- every transition -----------------------------------------------------------------------

Step = tuple[str, int] | str  # an answer (status, guests), or "cancel"


def _counts_of(last: Step) -> dict[str, int]:
    if last == "cancel":
        return expect()
    status, guests = last
    return expect(
        seats=1 + guests if status == "going" else 0,
        going=int(status == "going"),
        maybe=int(status == "maybe"),
        declined=int(status == "declined"),
    )


@pytest.mark.parametrize(
    "history",
    [
        [("going", 3)],
        [("maybe", 2)],
        [("declined", 0)],
        [("going", 1), ("maybe", 0)],
        [("going", 1), ("declined", 1)],
        [("maybe", 0), ("going", 1)],
        [("declined", 0), ("maybe", 0)],
        [("going", 1), ("going", 3)],
        [("going", 3), ("going", 0)],
        [("maybe", 2), ("maybe", 0)],
        [("going", 3), "cancel"],
        [("maybe", 0), "cancel"],
        [("declined", 2), "cancel"],
        [("going", 2), "cancel", ("going", 1)],
        [("maybe", 0), "cancel", ("declined", 0), ("going", 4), ("going", 4)],
    ],
    ids=lambda h: "-".join(s if isinstance(s, str) else f"{s[0]}+{s[1]}" for s in h),
)
async def test_after_any_history_the_counters_hold_only_the_last_answer(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
    history: list[Step],
) -> None:
    event = await create_event(client, organizer, capacity=20)

    for step in history:
        if step == "cancel":
            response = await client.delete(
                f"/events/{event['id']}/rsvps/me", headers=crowd[0]["headers"]
            )
        else:
            status, guests = step
            response = await post_rsvp(client, event, crowd[0], status, guests=guests)
        assert response.status_code in (200, 201), response.text

    assert await counters(database, event) == _counts_of(history[-1])


async def test_counters_equal_a_recount_after_many_concurrent_answers_changes_and_cancels(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    event = await create_event(client, organizer, capacity=12)
    rng = random.Random(20261201)

    async def act(user: dict[str, Any]) -> httpx.Response:
        if rng.random() < 0.2:
            return await client.delete(f"/events/{event['id']}/rsvps/me", headers=user["headers"])
        status = rng.choice(["going", "going", "maybe", "declined"])
        return await post_rsvp(client, event, user, status, guests=rng.randint(0, 3))

    responses: list[httpx.Response] = []
    for _ in range(10):  # 50 requests, five at a time
        responses += await asyncio.gather(*(act(rng.choice(crowd)) for _ in range(5)))

    # 404: cancelling with no active RSVP; 409: no seats left for that answer
    assert {r.status_code for r in responses} <= {200, 201, 404, 409}
    stored = await counters(database, event)
    assert stored == dict(await database.fetchrow(RECOUNT, uuid.UUID(event["id"])))
    assert stored["going_seats"] <= 12
