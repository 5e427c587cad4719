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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared.dlq.copies import COPY_COLUMNS, ReplayTarget, replay_copy
from shared.dlq.queries import StoreFilter
from shared.dlq.ratelimit import TokenBucket
from shared.dlq.watch import FailureWatch, WatchPolicy
from shared.messaging.batch_publisher import BatchPublisher, Confirmation, refusal

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


class ReplayJob:
    """One replay's run; its state lives in its row, so any process can read or cancel it."""

    def __init__(
        self,
        db: asyncpg.Pool,
        publisher: BatchPublisher,
        replay_id: uuid.UUID,
        order: ReplayOrder,
        *,
        matched: int,
        last_id: int,
        started_at: datetime,
        batch: int = BATCH,
        workers: int = WORKERS,
    ) -> None:
        self._db = db
        self._publisher = publisher
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
        # A watched replay takes one step at a time: its verdict comes between them.
        self._workers = 1 if self._watch is not None else workers
        #: rows claimed or replayed so far, against ``matched``
        self._taken = 0
        #: the highest id claimed so far: no later claim looks below it
        self._claimed_up_to = 0
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
        # Several steps in flight keep the broker busy while one waits for its
        # last confirms and commits; SKIP LOCKED gives each its own rows.
        await asyncio.gather(*(self._step_until_done() for _ in range(self._workers)))
        return self._ended or ("done", None)

    async def _step_until_done(self) -> None:
        args: list[Any] = []
        where = self._order.selection.where(args)
        claim = (
            f"SELECT {COPY_COLUMNS} FROM dead_letters WHERE state = 'dead' AND {where}"  # noqa: S608
            f" AND id > ${len(args) + 1} AND id <= ${len(args) + 2}"
            f" ORDER BY id LIMIT ${len(args) + 3} FOR UPDATE SKIP LOCKED"
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
                after, up_to = self._claimed_up_to, self._last_id
                rows = await connection.fetch(claim, *args, after, up_to, size)
                if rows:
                    # the next claims start after these (a step that fails ends the replay)
                    self._claimed_up_to = max(self._claimed_up_to, rows[-1]["id"])
                sent, refused = await self._publish(rows)
                await connection.execute(MARK_REPLAYED, [row["id"] for row in sent], self.replay_id)
                failed_again = self._watch.failed_again if self._watch else 0
                cancelled = await connection.fetchval(
                    PROGRESS, self.replay_id, len(sent), failed_again
                )
            self._taken -= size - len(sent)
            if self._watch is not None:
                self._watch.sent([row["message_id"] or "" for row in sent])
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

    async def _publish(
        self, rows: Sequence[asyncpg.Record]
    ) -> tuple[list[asyncpg.Record], str | None]:
        """Publish a copy of each row; the rows whose copy was confirmed, and why any was not.

        The copies go out in writes of many at once and their confirms are
        awaited together (cancelled meanwhile, the caller's transaction rolls
        back and nothing is marked). With a rate, a write holds only the
        copies the token bucket has let through.
        """
        if not rows:
            return [], None
        replayed_at = datetime.now(UTC).isoformat()
        copies = [replay_copy(row, self.replay_id, replayed_at, self._order.route) for row in rows]
        confirmations: list[Confirmation] = []
        chunk = len(copies) if self._rate is None else max(1, int(self._rate.burst))
        for start in range(0, len(copies), chunk):
            if self._rate is not None:
                for _ in range(min(chunk, len(copies) - start)):
                    await self._rate.acquire()
            confirmations += await self._publisher.send(copies[start : start + chunk])
        answers = await self._publisher.confirmed(confirmations)
        sent = [row for row, yes in zip(rows, answers, strict=True) if yes]
        return sent, refusal(confirmations)
