"""Stored dead letters made without a broker: what the archiver would have written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared.dlq.archive import ArrivedLetter, archive
from shared.messaging import faults
from shared.messaging.topology import EVENTS_EXCHANGE, WorkQueue
from shared.schemas import Envelope


def arrived(
    queue: WorkQueue,
    message: Envelope[Any],
    *,
    reason: str = "invalid_recipient",
    error: BaseException | None = None,
    failed_at: datetime | None = None,
) -> ArrivedLetter:
    headers = faults.fault_headers(
        {},
        reason=reason,
        error=error or RuntimeError(f"550 no such user <{message.message_id}@example.com>"),
        attempts=1,
        route=faults.SourceRoute(EVENTS_EXCHANGE, ""),
        queue=queue.name,
        failed_at=failed_at or datetime.now(UTC),
    )
    return ArrivedLetter.read(
        queue.dead_letter_queue,
        headers,
        message.model_dump_json().encode(),
        message_id=str(message.message_id),
        message_type=message.type,
        properties={"content_type": "application/json", "app_id": "tests"},
    )


async def store_letters(db: asyncpg.Pool, letters: Sequence[ArrivedLetter]) -> None:
    for start in range(0, len(letters), 1000):
        await archive(db, letters[start : start + 1000])
