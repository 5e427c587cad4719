"""Fixtures of the dead-letter store tests: an empty store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

STORE_TABLES = "dead_letters, dead_letter_groups, dead_letter_replays, audit_log"


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
