"""The write side of the dead-letter store: archive a batch of dead letters, prune old ones.

One ``INSERT … SELECT FROM unnest(…)`` stores a whole batch (one round trip
for the few hundred deliveries the archiver has in flight); ``ON CONFLICT DO
NOTHING`` on ``(queue, message_id, failed_at)`` makes a redelivery after a
crash between commit and ack a no-op. The statement triggers of migration
0010 keep the failure groups' counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from shared.dlq.fingerprint import failure_group
from shared.dlq.selection import DeadLetter, read_dead_letter
from shared.dlq.views import jsonable

#: The header a replayed copy carries, so its next failure is traced to the replay.
REPLAY_ID = "x-replay-id"

ARCHIVE = """
INSERT INTO dead_letters (queue, message_id, type, reason, exception_type, exception_message,
    attempts, failed_at, original_exchange, original_routing_key, original_queue, headers,
    properties, body, x_death, group_key, replay_of, replay_count)
SELECT queue, message_id, type, reason, exception_type, exception_message, attempts, failed_at,
    original_exchange, original_routing_key, original_queue, headers::jsonb, properties::jsonb,
    body, x_death::jsonb, group_key, replay_of, replay_count
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::int[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::text[],
    $13::text[], $14::bytea[], $15::text[], $16::text[], $17::uuid[], $18::int[])
    AS u(queue, message_id, type, reason, exception_type, exception_message, attempts,
        failed_at, original_exchange, original_routing_key, original_queue, headers,
        properties, body, x_death, group_key, replay_of, replay_count)
ON CONFLICT (queue, message_id, failed_at) DO NOTHING
"""

PRUNE = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters
    WHERE state <> 'dead' AND changed_at < now() - make_interval(secs => $1)
    LIMIT $2
)
"""


def _json(value: Any) -> str:
    # PostgreSQL text and jsonb refuse NUL, which an exception message may carry
    return orjson.dumps(jsonable(value)).decode().replace("\\u0000", "")


def _clean(text: str | None) -> str | None:
    return text.replace("\x00", "") if text is not None else None


@dataclass(frozen=True)
class ArrivedLetter:
    """A dead letter as taken from its queue, ready to be stored."""

    queue: str
    letter: DeadLetter
    properties: Mapping[str, Any]

    @classmethod
    def read(
        cls,
        queue: str,
        headers: Mapping[str, Any],
        body: bytes,
        *,
        message_id: str | None,
        message_type: str | None,
        properties: Mapping[str, Any],
    ) -> ArrivedLetter:
        letter = read_dead_letter(
            headers,
            message_id=message_id,
            message_type=message_type,
            dead_letter_queue=queue,
            body=body,
        )
        return cls(queue, letter, properties)

    @property
    def replay_of(self) -> UUID | None:
        value = self.letter.headers.get(REPLAY_ID)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        try:
            return UUID(value) if isinstance(value, str) else None
        except ValueError:
            return None

    def row(self) -> tuple[Any, ...]:
        letter = self.letter
        x_death = letter.headers.get("x-death")
        return (
            self.queue,
            _clean(letter.message_id),
            _clean(letter.type),
            _clean(letter.reason),
            _clean(letter.exception_type),
            _clean(letter.exception_message),
            letter.attempts,
            letter.failed_at,
            letter.original_exchange,
            letter.original_routing_key,
            letter.original_queue,
            _json(letter.headers),
            _json(self.properties),
            letter.body,
            _json(x_death) if x_death is not None else None,
            failure_group(
                letter.original_queue,
                letter.type,
                letter.exception_type,
                letter.exception_message,
            ),
            self.replay_of,
            letter.replay_count,
        )


async def archive(
    connection: asyncpg.Connection | asyncpg.Pool, arrived: Sequence[ArrivedLetter]
) -> int:
    """Store ``arrived`` in one statement; returns how many were new (not stored before)."""
    if not arrived:
        return 0
    columns = list(zip(*(a.row() for a in arrived), strict=True))
    status = await connection.execute(ARCHIVE, *(list(column) for column in columns))
    return int(status.rsplit(" ", 1)[-1])


async def prune_settled(pool: asyncpg.Pool, *, older_than_s: float, batch: int = 1000) -> int:
    """Remove replayed and deleted letters settled longer ago than ``older_than_s``, a batch
    at a time (short transactions, no long lock on the table); returns how many went."""
    removed = 0
    while True:
        status = await pool.execute(PRUNE, older_than_s, batch)
        count = int(status.rsplit(" ", 1)[-1])
        removed += count
        if count < batch:
            return removed
