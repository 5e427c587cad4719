"""The PostgreSQL inbox on its own: how a claim finds a message; an inbox its handler records in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from devtools.env import EnvSettings
from shared.messaging.inbox import PostgresInbox, record_handled_sql
from tests.support.services import create_database, drop_database, new_resource_name

pytestmark = pytest.mark.integration

CONSUMER = "email/email.rsvp_events"
SCANS = "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables WHERE relname = 'consumer_inbox'"


@pytest.fixture
async def pool(env_settings: EnvSettings) -> AsyncIterator[asyncpg.Pool]:
    """A new database with the inbox's table, never analyzed (as right after a deploy)."""
    name = new_resource_name()
    url = await create_database(env_settings, name)
    pool = await asyncpg.create_pool(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await PostgresInbox(pool).ensure_schema()
        yield pool
    finally:
        await pool.close()
        await drop_database(env_settings, name)


async def test_a_claim_looks_its_message_up_by_key_on_a_table_never_analyzed(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(
        "INSERT INTO consumer_inbox (consumer, message_id, followups)"
        " SELECT $1, gen_random_uuid(), '[]' FROM generate_series(1, 3000)",
        CONSUMER,
    )
    async with pool.acquire() as connection, connection.transaction():
        # the plan a long-lived session settles on: one for any number of ids
        await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        before = await connection.fetchrow(SCANS)  # this session's counts not yet reported
        await connection.fetch(
            "SELECT * FROM consumer_inbox_claim_many('{}', '{}', $1::text[], $2::uuid[])",
            [CONSUMER],
            [uuid.uuid4()],
        )
        after = await connection.fetchrow(SCANS)
        await connection.execute("SELECT pg_advisory_unlock_all()")

    assert before is not None
    assert after is not None
    assert after["seq_scan"] == before["seq_scan"]
    assert after["idx_scan"] == before["idx_scan"] + 1


async def test_an_inbox_whose_handler_records_takes_no_lock_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    inbox = PostgresInbox(pool, recorded_by_handler=True)
    message_id = uuid.uuid4()

    async with inbox.claim(CONSUMER, message_id) as first:
        async with inbox.claim(CONSUMER, message_id) as second:  # a copy in flight at once
            await second.record([])
        await first.record([])
    locks = await pool.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )  # this run's database only: other runs on the server take locks of their own
    unrecorded = await inbox.seen(CONSUMER, message_id)
    await pool.execute(record_handled_sql(1, 2), CONSUMER, [message_id])  # as its handler does

    assert (first.busy, first.followups, second.busy, second.followups) == (
        False,
        None,
        False,
        None,
    )
    assert locks == 0
    assert unrecorded is None
    assert await inbox.seen(CONSUMER, message_id) == []


async def test_claims_that_find_the_inbox_idle_wait_for_company_and_go_out_together(
    pool: asyncpg.Pool,
) -> None:
    inbox = PostgresInbox(pool, gather_s=5.0, gather_max=3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    answered: list[float] = []

    async def handle(message_id: uuid.UUID) -> None:
        async with inbox.claim(CONSUMER, message_id) as claim:
            answered.append(loop.time() - started)
            await claim.record([])

    first = asyncio.create_task(handle(uuid.uuid4()))
    await asyncio.sleep(0.05)
    others = [asyncio.create_task(handle(uuid.uuid4())) for _ in range(2)]
    await asyncio.wait_for(asyncio.gather(first, *others), 4.0)  # not the whole 5 s

    # the first waited for the others; the third ended the wait (gather_max)
    assert min(answered) >= 0.05
    assert inbox.claim_batches == 1


async def test_a_claim_alone_waits_at_most_the_gather_time_and_a_record_not_at_all(
    pool: asyncpg.Pool,
) -> None:
    inbox = PostgresInbox(pool, gather_s=0.3, gather_max=16)
    loop = asyncio.get_running_loop()
    message_id = uuid.uuid4()

    started = loop.time()
    async with inbox.claim(CONSUMER, message_id) as claim:
        claimed = loop.time() - started
        started = loop.time()
        await claim.record([])
        recorded = loop.time() - started

    assert 0.3 <= claimed < 2.0
    assert recorded < 0.25  # a record goes at once, although the session just woke for it
    assert await inbox.seen(CONSUMER, message_id) == []


async def test_a_record_ends_the_wait_of_claims_gathering_and_takes_them_along(
    pool: asyncpg.Pool,
) -> None:
    inbox = PostgresInbox(pool, gather_s=0.5, gather_max=16)
    loop = asyncio.get_running_loop()
    gathering = asyncio.Event()
    answered = 0.0

    async def second() -> None:
        nonlocal answered
        started = loop.time()
        gathering.set()
        async with inbox.claim(CONSUMER, uuid.uuid4()) as claim:  # finds the inbox idle
            answered = loop.time() - started
            await claim.record([])

    async with inbox.claim(CONSUMER, uuid.uuid4()) as claim:
        task = asyncio.create_task(second())
        await gathering.wait()
        await asyncio.sleep(0.05)
        await claim.record([])  # goes at once, and the waiting claim with it
    await task

    assert answered < 0.4
    assert inbox.claim_batches == 2
