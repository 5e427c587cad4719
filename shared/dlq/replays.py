"""Replay from the store: a background job with its own row in ``dead_letter_replays``.

Each step claims a batch of ``dead`` rows (``FOR UPDATE SKIP LOCKED``, so
two replays never send the same row at once), publishes a copy of each with
publisher confirms, and in the same transaction that holds the claim marks
only the confirmed ones ``replayed`` (with the replay id and count) and adds
them to the replay's progress. The publish is not transactional, so:

* a crash after a confirm and before the commit leaves the row ``dead``: a
  later replay sends it again, and the consumers' inbox (same
  ``message_id``) absorbs the duplicate;
* a row is never marked replayed unless its copy was confirmed.

So a replay stopped at any point leaves each row either replayed or dead.
Rows that arrive after the replay began are not part of it (it ends at the
highest id it matched). Cancelling (``cancel_requested``) and the failure
watch (:mod:`shared.dlq.watch`) are looked at between batches.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import AbstractChannel

from shared.dlq.archive import REPLAY_ID
from shared.dlq.passes import ReplayTarget, publish_confirmed
from shared.dlq.queries import StoredLetter, StoreFilter, stored_letter
from shared.dlq.ratelimit import TokenBucket
from shared.dlq.selection import replay_headers
from shared.dlq.watch import FailureWatch, WatchPolicy

log = logging.getLogger(__name__)

#: Rows claimed, published and marked per transaction.
BATCH = 500
#: Steps (claim, publish, mark) of one replay in flight at once.
WORKERS = 2
#: A running replay whose row was not touched for this long lost its process.
ABANDONED_AFTER_S = 60

MARK_REPLAYED = """
UPDATE dead_letters
SET state = 'replayed', replay_id = $2, replay_count = replay_count + 1, changed_at = now()
WHERE id = ANY($1::bigint[]) AND state = 'dead'
"""
PROGRESS = """
UPDATE dead_letter_replays SET replayed = replayed + $2, failed_again = $3, updated_at = now()
WHERE id = $1
RETURNING cancel_requested
"""
FINISH = """
UPDATE dead_letter_replays
SET state = $2, stopped_reason = $3, failed_again = greatest(failed_again, $4),
    updated_at = now(), finished_at = now()
WHERE id = $1 AND state = 'running'
"""


@dataclass(frozen=True)
class ReplayOrder:
    """What an operator asked to replay, and how."""

    selection: StoreFilter
    actor: str
    limit: int | None = None
    rate: float | None = None
    dry_run: bool = False
    route: ReplayTarget = ReplayTarget.QUEUE
    stop_if_failing: bool = False
    watch: WatchPolicy = field(default_factory=WatchPolicy)

    def as_json(self) -> dict[str, Any]:
        return {
            "filter": self.selection.as_json(),
            "limit": self.limit,
            "rate": self.rate,
            "dry_run": self.dry_run,
            "route": self.route.value,
            "stop_if_failing": self.stop_if_failing,
        }


def replay_copy(stored: StoredLetter, replay_id: uuid.UUID) -> aio_pika.Message:
    """The copy a replay publishes: same id, type and body; attempts reset; replay counted.

    ``x-death`` stays in the store: a history read back from JSON is not the
    broker's own table any more, and the broker starts a fresh one.
    """
    letter, properties = stored.letter, stored.properties
    headers = {k: v for k, v in replay_headers(letter).items() if k != "x-death"}
    headers[REPLAY_ID] = str(replay_id)
    timestamp = properties.get("timestamp")
    return aio_pika.Message(
        letter.body,
        headers=headers,
        content_type=properties.get("content_type"),
        correlation_id=properties.get("correlation_id"),
        app_id=properties.get("app_id"),
        timestamp=datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else None,
        message_id=letter.message_id,
        type=letter.type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class ReplayJob:
    """One replay's run; its state lives in its row, so any process can read or cancel it."""

    def __init__(
        self,
        db: asyncpg.Pool,
        channel: AbstractChannel,
        replay_id: uuid.UUID,
        order: ReplayOrder,
        *,
        matched: int,
        last_id: int,
        started_at: datetime,
        batch: int = BATCH,
    ) -> None:
        self._db = db
        self._channel = channel
        self.replay_id = replay_id
        self._order = order
        self._matched = matched
        self._last_id = last_id
        self._started_at = started_at
        self._rate = TokenBucket(order.rate) if order.rate else None
        self._watch = FailureWatch(replay_id, order.watch) if order.stop_if_failing else None
        if self._watch is not None:
            batch = min(batch, order.watch.window)
        if order.rate is not None:
            batch = min(batch, max(1, int(order.rate)))  # a claim held about a second at most
        self._batch = batch
        #: rows claimed or replayed so far, against ``matched``
        self._taken = 0
        self._ended: tuple[str, str | None] | None = None

    async def run(self) -> None:
        """Replay until done, cancelled, failing or refused; the outcome is in the row."""
        try:
            state, reason = await self._replay()
        except asyncio.CancelledError:
            await asyncio.shield(self._finish("stopped", "interrupted: the process stopped"))
            raise
        except Exception as exc:
            log.exception("replay %s failed", self.replay_id)
            state, reason = "stopped", f"failed: {exc!r}"
        await self._finish(state, reason)

    async def _finish(self, state: str, reason: str | None) -> None:
        failed_again = self._watch.failed_again if self._watch else 0
        await self._db.execute(FINISH, self.replay_id, state, reason, failed_again)

    async def _replay(self) -> tuple[str, str | None]:
        # Two steps in flight keep the broker busy while the other one waits for
        # its last confirms and commits; SKIP LOCKED gives each its own rows. A
        # watched replay takes one step at a time: its verdict comes between them.
        workers = 1 if self._watch is not None else WORKERS
        await asyncio.gather(*(self._step_until_done() for _ in range(workers)))
        return self._ended or ("done", None)

    async def _step_until_done(self) -> None:
        args: list[Any] = []
        where = self._order.selection.where(args)
        claim = (
            f"SELECT * FROM dead_letters WHERE state = 'dead' AND {where}"  # noqa: S608
            f" AND id <= ${len(args) + 1}"
            f" ORDER BY id LIMIT ${len(args) + 2} FOR UPDATE SKIP LOCKED"
        )
        while self._ended is None:
            if (reason := await self._hold_back()) is not None:
                self._ended = self._ended or ("stopped", reason)
                return
            size = min(self._batch, self._matched - self._taken)
            if size <= 0:
                return
            self._taken += size  # reserved before the claim: the other step sees it
            async with self._db.acquire() as connection, connection.transaction():
                rows = await connection.fetch(claim, *args, self._last_id, size)
                letters = [stored_letter(row) for row in rows]
                confirmed, refused = await self._publish(letters)
                await connection.execute(MARK_REPLAYED, [s.id for s in confirmed], self.replay_id)
                failed_again = self._watch.failed_again if self._watch else 0
                cancelled = await connection.fetchval(
                    PROGRESS, self.replay_id, len(confirmed), failed_again
                )
            self._taken -= size - len(confirmed)
            if self._watch is not None:
                self._watch.sent([s.letter.message_id or "" for s in confirmed])
            if refused is not None:
                self._ended = self._ended or ("stopped", f"broker refused: {refused}")
            elif cancelled:
                self._ended = self._ended or ("stopped", "cancelled")
            elif not rows:
                return  # nothing left that is still dead (another replay took the rest)

    async def _hold_back(self) -> str | None:
        """With a watch: wait while a window of copies has no outcome; say why to stop."""
        if self._watch is None:
            return None
        while True:
            await self._watch.observe(self._db, self._started_at)
            if (verdict := self._watch.verdict()) is not None:
                return verdict
            if self._watch.outstanding < self._watch.policy.window:
                return None
            cancelled = await self._db.fetchval(
                PROGRESS, self.replay_id, 0, self._watch.failed_again
            )
            if cancelled:
                return "cancelled"
            await asyncio.sleep(0.05)

    async def _publish(self, letters: list[StoredLetter]) -> tuple[list[StoredLetter], str | None]:
        """Publish a copy of each; the confirmed ones, and why any was refused."""
        if not letters:
            return [], None
        raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())

        async def one(stored: StoredLetter) -> StoredLetter:
            letter = stored.letter
            if self._order.route is ReplayTarget.EXCHANGE:
                exchange, key = letter.original_exchange, letter.original_routing_key
            else:
                exchange, key = "", letter.original_queue
            await publish_confirmed(raw, replay_copy(stored, self.replay_id), exchange, key)
            return stored

        tasks = []
        for stored in letters:
            if self._rate is not None:
                await self._rate.acquire()
            tasks.append(asyncio.create_task(one(stored)))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        confirmed = [r for r in results if isinstance(r, StoredLetter)]
        refused = next((r for r in results if isinstance(r, BaseException)), None)
        if refused is not None and not isinstance(refused, Exception):
            raise refused  # cancelled: the transaction rolls back, nothing is marked
        return confirmed, str(refused) if refused is not None else None
