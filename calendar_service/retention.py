"""Pruning what is remembered only for a while: Idempotency-Keys, inbox records, push ledger.

The scheduler runs :func:`keep_pruning` beside its passes. Each table is
pruned by its timestamp index in batches, one short transaction each, so a
large backlog never holds locks or bloats one transaction. An inbox record or
a ledger row must outlive every replay of its message: the default retention
matches the dead-letter store's (30 days).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

#: Rows deleted per transaction.
BATCH = 5_000
#: How often the scheduler prunes (the first time a minute after it starts).
EVERY_S = 3600.0
FIRST_AFTER_S = 60.0

#: table -> its timestamp column (each has an index on it)
TABLES = {
    "idempotency_keys": "created_at",
    "consumer_inbox": "handled_at",
    "push_deliveries": "delivered_at",
}


def _statement(table: str, column: str) -> str:
    return (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - names from TABLES only
        f"SELECT ctid FROM {table} WHERE {column} < now() - make_interval(secs => :keep)"
        " LIMIT :batch))"
    )


async def prune_expired(
    engine: AsyncEngine, *, idempotency_key_retention_s: int, inbox_retention_s: int
) -> dict[str, int]:
    """Delete every expired row, batch by batch; how many per table."""
    keep = {
        "idempotency_keys": idempotency_key_retention_s,
        "consumer_inbox": inbox_retention_s,
        "push_deliveries": inbox_retention_s,
    }
    removed = {}
    for table, column in TABLES.items():
        statement, total = text(_statement(table, column)), 0
        while True:
            async with engine.begin() as connection:
                result = await connection.execute(statement, {"keep": keep[table], "batch": BATCH})
            total += result.rowcount
            if result.rowcount < BATCH:
                break
        removed[table] = total
    return removed


async def keep_pruning(
    engine: AsyncEngine,
    stop: asyncio.Event,
    *,
    idempotency_key_retention_s: int,
    inbox_retention_s: int,
) -> None:
    """Prune now and then until ``stop``; a failed round is logged and tried next time."""
    wait = FIRST_AFTER_S
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
            return
        except TimeoutError:
            pass
        wait = EVERY_S
        try:
            removed = await prune_expired(
                engine,
                idempotency_key_retention_s=idempotency_key_retention_s,
                inbox_retention_s=inbox_retention_s,
            )
        except (OSError, DBAPIError, PoolTimeout) as exc:  # PoolTimeout: the pool busy
            log.warning("pruning failed; trying again in %.0f s: %r", wait, exc)
            continue
        if any(removed.values()):
            log.info("pruned expired rows: %s", removed)
