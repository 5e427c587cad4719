"""A pool with no connection free in ``DB_POOL_TIMEOUT_S`` is the database busy, in every process.

Each test holds the only connection of a one-connection pool, so the next
acquire must wait: it gives up after the pool's acquire timeout with
``PoolExhausted``, which the consumers take as "not attempted" (the message
is held, no retry tier used) and the relay as a reason to back off. A
statement timeout, PostgreSQL's answer, stays an error of the work. The
scheduler's SQLAlchemy pool is bounded by the same setting.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
import pytest

from calendar_service.config import Settings as CalendarSettings
from calendar_service.db.session import create_engine
from calendar_service.delivery_reports import record_deliveries
from calendar_service.errors import Overloaded
from calendar_service.relay import OutboxRelay, RelayOptions
from calendar_service.scheduler import Scheduler
from email_consumer.config import Settings as EmailSettings
from push_consumer.store import PostgresSubscriptionStore, store_pool
from shared.dlq.queries import StoreFilter
from shared.dlq.store import DeadLetterStore, store_session_settings
from shared.messaging.errors import NotAttempted
from shared.messaging.inbox import PostgresInbox
from shared.messaging.publisher import Publisher
from shared.schemas import EmailSent, EmailSentPayload
from shared.service.consumer import inbox_pool
from shared.service.database import (
    BoundedPool,
    PoolExhausted,
    bounded_pool,
    database_unreachable,
)
from tests.support.amqp import channel_as
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration

#: The acquire timeout of these tests' pools.
WAIT_S = 0.3
#: How much later than ``WAIT_S`` giving up may come on a busy machine: a bound, not a measure.
SLACK_S = 3.0


@pytest.fixture
def dsn(database_url: str) -> str:
    return database_url.replace("+asyncpg", "")


@asynccontextmanager
async def busy_pool(dsn: str, **options: Any) -> AsyncIterator[BoundedPool]:
    """A pool of one connection, held for the whole block: every other acquire has to wait."""
    pool = await bounded_pool(dsn, acquire_timeout_s=WAIT_S, min_size=1, max_size=1, **options)
    try:
        async with pool.acquire():
            yield pool
    finally:
        await pool.close()


async def gives_up_in_time(work: Callable[[], Awaitable[object]]) -> BaseException:
    """The error ``work`` raised, once it gave up waiting; fails if it waited far too long."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(WAIT_S + SLACK_S) as guard:
            await work()
    except Exception as exc:
        assert not guard.expired(), f"still waiting {SLACK_S} s past the pool timeout"
        waited = time.monotonic() - started
        assert waited >= WAIT_S * 0.9, f"gave up after {waited:.2f} s, before the pool timeout"
        return exc
    pytest.fail("the work did not wait for a connection")


def exhausted_underneath(error: BaseException) -> PoolExhausted:
    """``error`` or what it was raised from, which must be the pool giving up."""
    cause = error if isinstance(error, PoolExhausted) else error.__cause__
    assert isinstance(cause, PoolExhausted), repr(error)
    return cause


async def test_every_way_of_taking_a_connection_waits_no_longer_than_the_pool_timeout(
    dsn: str,
) -> None:
    async with busy_pool(dsn) as pool:

        async def in_a_block() -> None:
            async with pool.acquire():
                pass

        errors = [
            await gives_up_in_time(lambda: pool.acquire()),
            await gives_up_in_time(in_a_block),
            await gives_up_in_time(lambda: pool.fetchval("SELECT 1")),
        ]

    assert all(isinstance(error, PoolExhausted) for error in errors)
    assert all(database_unreachable(error) for error in errors)


async def test_a_statement_timeout_is_an_answer_not_an_unreachable_database(dsn: str) -> None:
    pool = await bounded_pool(
        dsn,
        acquire_timeout_s=WAIT_S,
        min_size=1,
        max_size=1,
        server_settings={"statement_timeout": "100"},
    )
    try:
        with pytest.raises(asyncpg.QueryCanceledError) as raised:
            await pool.execute("SELECT pg_sleep(5)")
    finally:
        await pool.close()

    assert not database_unreachable(raised.value)


async def test_an_inbox_claim_on_a_busy_pool_is_not_attempted(dsn: str) -> None:
    async with busy_pool(dsn) as pool:
        inbox = PostgresInbox(pool)

        async def claim() -> None:
            async with inbox.claim("email/email.rsvp_events", uuid.uuid4()):
                pass

        error = await gives_up_in_time(claim)

    assert isinstance(error, NotAttempted)  # the runtime holds the message
    assert database_unreachable(exhausted_underneath(error))


async def test_a_relay_pass_on_a_busy_pool_gives_up_and_the_relay_backs_off(
    dsn: str, broker: BrokerEnv
) -> None:
    async with (
        busy_pool(dsn) as pool,
        channel_as(broker.amqp_url("calendar")) as channel,
    ):
        relay = OutboxRelay(pool, Publisher(channel), RelayOptions(max_backoff_s=0.5))
        error = await gives_up_in_time(relay.publish_pending_outbox)

        running = asyncio.create_task(relay.run())
        await asyncio.sleep(3 * WAIT_S)
        still_running = not running.done()
        relay.stop()
        await asyncio.wait_for(running, timeout=WAIT_S + SLACK_S)

    assert database_unreachable(exhausted_underneath(error))
    assert still_running, "the relay backs off and tries again; it does not stop"


async def test_a_scheduler_pass_on_a_busy_pool_gives_up_and_the_scheduler_backs_off(
    database_url: str,
) -> None:
    settings = CalendarSettings(
        database_url=database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=WAIT_S
    )
    engine = create_engine(settings)
    try:
        async with engine.connect():  # the pool's only connection
            scheduler = Scheduler(engine, offsets_s=settings.reminder_offsets)
            error = await gives_up_in_time(scheduler.run_once)

            stop = asyncio.Event()
            running = asyncio.create_task(scheduler.run(stop))
            await asyncio.sleep(3 * WAIT_S)
            still_running = not running.done()
            stop.set()
            await asyncio.wait_for(running, timeout=WAIT_S + SLACK_S)
    finally:
        await engine.dispose()

    assert isinstance(error, Overloaded)
    assert still_running, "the scheduler backs off and tries again; it does not stop"


async def test_delivery_reports_on_a_busy_pool_are_not_attempted(dsn: str) -> None:
    report = EmailSent.first(
        EmailSentPayload(
            source_message_id=uuid.uuid4(),
            source_type="rsvp.created",
            kind="confirmation",
            user_id=uuid.uuid4(),
            event_id=uuid.uuid4(),
            rsvp_id=uuid.uuid4(),
            rsvp_version=1,
            recipient="guest@example.com",
            smtp_message_id="<x@y>",
        ),
        producer="email_consumer",
    )
    async with busy_pool(dsn) as pool:
        error = await gives_up_in_time(lambda: record_deliveries(pool, [report]))

    assert isinstance(error, NotAttempted)  # held, then redelivered; no retry tier used
    assert database_unreachable(exhausted_underneath(error))


async def test_push_subscriptions_on_a_busy_pool_are_not_attempted(dsn: str) -> None:
    async with busy_pool(dsn) as pool:
        store = PostgresSubscriptionStore(pool, ledger="push/push.rsvp_events")
        error = await gives_up_in_time(lambda: store.devices_for(uuid.uuid4(), uuid.uuid4()))

    assert isinstance(error, NotAttempted)
    assert database_unreachable(exhausted_underneath(error))


async def test_the_dead_letter_store_waits_no_longer_than_its_pool_timeout(dsn: str) -> None:
    store = DeadLetterStore(dsn, "amqp://unused", pool_size=1, pool_timeout_s=WAIT_S)
    async with store, (await store.db()).acquire():
        error = await gives_up_in_time(lambda: store.page(StoreFilter()))

    assert database_unreachable(exhausted_underneath(error))


async def test_the_consumers_pools_are_bounded_by_db_pool_timeout_s(database_url: str) -> None:
    settings = EmailSettings(database_url=database_url, db_pool_timeout_s=WAIT_S)
    async with (
        inbox_pool(settings, spare=0) as inbox,
        store_pool(settings.asyncpg_dsn, acquire_timeout_s=settings.db_pool_timeout_s) as store,
        AsyncExitStack() as holding,
    ):
        for pool in (inbox, store):
            for _ in range(pool.get_max_size()):
                await holding.enter_async_context(pool.acquire(timeout=SLACK_S))
        errors = [
            await gives_up_in_time(lambda: inbox.fetchval("SELECT 1")),
            await gives_up_in_time(lambda: store.fetchval("SELECT 1")),
        ]

    assert all(isinstance(error, PoolExhausted) for error in errors)


async def test_the_dead_letter_store_bounds_lock_waits_but_not_a_long_bulk_statement(
    dsn: str,
) -> None:
    settings = EmailSettings(db_statement_timeout_ms=1234, db_lock_timeout_ms=567)
    store = DeadLetterStore(
        dsn,
        "amqp://unused",
        pool_size=1,
        server_settings=store_session_settings(settings.db_server_settings),
    )
    async with store, (await store.db()).acquire() as connection:
        lock_timeout = await connection.fetchval("SHOW lock_timeout")
        statement_timeout = await connection.fetchval("SHOW statement_timeout")

    assert lock_timeout == "567ms"
    assert statement_timeout == "0"
