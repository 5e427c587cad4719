"""Expired Idempotency-Keys, inbox records and push-ledger rows are pruned; fresh ones stay."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.retention import prune_expired
from tests.support.api import random_email
from tests.support.services import as_role

pytestmark = pytest.mark.integration

DAY = 86400


async def _seed(database: asyncpg.Connection, age_s: float) -> dict[str, uuid.UUID]:
    """One row per table, ``age_s`` seconds old."""
    user_id, message_id = uuid.uuid4(), uuid.uuid4()
    await database.execute(
        "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, 'R', 'x')",
        user_id,
        random_email("retention"),
    )
    await database.execute(
        "INSERT INTO idempotency_keys (user_id, key, request_fingerprint, status_code,"
        " response_body, created_at)"
        " VALUES ($1, 'k', 'f', 201, '', now() - make_interval(secs => $2))",
        user_id,
        age_s,
    )
    await database.execute(
        "INSERT INTO consumer_inbox (consumer, message_id, handled_at)"
        " VALUES ('test/q', $1, now() - make_interval(secs => $2))",
        message_id,
        age_s,
    )
    await database.execute(
        "INSERT INTO push_deliveries (consumer, message_id, subscription_id, delivered_at)"
        " VALUES ('push', $1, $2, now() - make_interval(secs => $3))",
        message_id,
        uuid.uuid4(),
        age_s,
    )
    return {"user": user_id, "message": message_id}


async def _left(database: asyncpg.Connection, ids: dict[str, uuid.UUID]) -> tuple[int, int, int]:
    return (
        await database.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE user_id = $1", ids["user"]
        ),
        await database.fetchval(
            "SELECT count(*) FROM consumer_inbox WHERE message_id = $1", ids["message"]
        ),
        await database.fetchval(
            "SELECT count(*) FROM push_deliveries WHERE message_id = $1", ids["message"]
        ),
    )


async def test_expired_rows_are_pruned_and_fresh_ones_kept(
    calendar_settings: Settings, database: asyncpg.Connection
) -> None:
    old, recent, fresh = (
        await _seed(database, 40 * DAY),
        await _seed(database, 2 * DAY),
        await _seed(database, 60),
    )
    url = as_role(calendar_settings.database_url, "rsvp_scheduler")  # the scheduler's role
    engine = create_engine(calendar_settings.model_copy(update={"database_url": url}))

    try:
        removed = await prune_expired(
            engine, idempotency_key_retention_s=DAY, inbox_retention_s=30 * DAY
        )
    finally:
        await engine.dispose()

    assert await _left(database, old) == (0, 0, 0)
    # a key is kept a day, the inbox and the push ledger a month
    assert await _left(database, recent) == (0, 1, 1)
    assert await _left(database, fresh) == (1, 1, 1)
    assert removed["idempotency_keys"] >= 2
    assert removed["consumer_inbox"] >= 1
    assert removed["push_deliveries"] >= 1
