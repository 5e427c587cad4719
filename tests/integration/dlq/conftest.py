"""Fixtures of the dead-letter store tests: an empty store, a running archiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from calendar_service.deadletters.archiver import ArchiverService, ArchiverSettings, bootstrap
from tests.support.services import BrokerEnv

STORE_TABLES = "dead_letters, dead_letter_groups, dead_letter_replays, audit_log"


def archiver_settings(
    broker: BrokerEnv, database_url: str, **overrides: object
) -> ArchiverSettings:
    values: dict[str, object] = {
        "app_env": "test",
        "database_url": database_url,
        "amqp_url": broker.amqp_url("calendar"),
        "admin_amqp_url": broker.amqp_url("ops"),
        "metrics_port": None,
        **overrides,
    }
    return ArchiverSettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running_archiver(settings: ArchiverSettings) -> AsyncIterator[ArchiverService]:
    """The archiver of ``python -m calendar_service.deadletters`` until the block ends."""
    stop = asyncio.Event()
    async with bootstrap(settings) as service:
        task = asyncio.create_task(service.run(stop))
        try:
            yield service
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The run's database with an empty dead-letter store (the tests here run one at a time)."""
    pool = await asyncpg.create_pool(database_url.replace("+asyncpg", ""), min_size=1, max_size=4)
    assert pool is not None
    await pool.execute(f"TRUNCATE {STORE_TABLES}")
    try:
        yield pool
    finally:
        await pool.close()
