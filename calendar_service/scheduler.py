"""`python -m calendar_service.scheduler`: the scheduler.

It sends reminders before events start and fans out announcements, both as
commands through the outbox. Run two or more for availability: they split the
work (``FOR UPDATE SKIP LOCKED``) and never send a reminder twice.

Reminders are not stored ahead of time. When one falls due (the event starts
within an offset, default 24 h and 1 h), the scheduler reads who is going
*now* and writes one ``reminders`` row per (event, attendee, offset) with the
``email.send`` / ``push.send`` commands in the same transaction. The row's key
makes it exactly-once across schedulers and restarts; reading the RSVP and the
event at due time means a cancelled or declined RSVP gets nothing, a moved
event's reminders move with it, and an event that has started gets none.

The scheduler sleeps until the next reminder falls due, woken earlier by a
NOTIFY when an announcement is posted or an event's start moves (triggers,
migration 0004), and at the latest after ``SCHEDULER_MAX_SLEEP_S`` (a safety
net for rows skipped because another transaction held them). Its clock is
injected, so tests drive it through days in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from calendar_service.announcements import fan_out_batch
from calendar_service.commands import COMMAND_NAMESPACE, attendee, commands_for, event_summary
from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import Overloaded
from calendar_service.retention import keep_pruning
from shared.schemas import Envelope, NotificationCommand
from shared.service.backoff import Backoff
from shared.service.database import DATABASE_TROUBLE
from shared.service.listener import keep_listening
from shared.service.process import run_service

log = logging.getLogger(__name__)

#: What fails a pass without ending the scheduler: the database away or busy.
_PASS_TROUBLE: tuple[type[BaseException], ...] = (*DATABASE_TROUBLE, DBAPIError, Overloaded)
DEFAULT_METRICS_PORT = 9105

Clock = Callable[[], datetime]
REMINDER_CHANNELS = ("email", "push")
#: Windows (event, offset) read per pass; more are taken by the next pass at once.
WINDOWS_PER_PASS = 200
#: How soon a pass that left a window unfinished comes back.
RETRY_UNFINISHED_S = 1.0


def system_clock() -> datetime:
    return datetime.now(UTC)


class SchedulerMetrics:
    """Prometheus series of one scheduler, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reminders = Counter(
            "scheduler_reminders_total",
            "Reminders written (one per event, attendee and offset; each is a command per channel)",
            registry=self.registry,
        )
        self.recipients = Counter(
            "scheduler_announcement_recipients_total",
            "Announcement recipients queued (each is a command per channel)",
            registry=self.registry,
        )
        self.passes = Counter(
            "scheduler_passes_total", "Passes over due work that completed", registry=self.registry
        )
        self.failures = Counter(
            "scheduler_pass_failures_total",
            "Passes that failed and were retried",
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class Pass:
    """What one pass of the scheduler did."""

    reminders: int
    announced: int


def _reminder_commands(row: RowMapping, offset_s: int) -> list[Envelope[Any]]:
    key = f"reminder:{row['event_id']}:{row['user_id']}:{offset_s}"
    payload = NotificationCommand(
        kind="reminder",
        recipient=attendee(row, user_key="user_id"),
        event=event_summary(row, event_id=row["event_id"]),
        rsvp_id=row["rsvp_id"],
        status="going",
        remind_before_seconds=offset_s,
    )
    # one correlation id for both channels of one reminder
    correlation_id = uuid.uuid5(COMMAND_NAMESPACE, key)
    return commands_for(payload, REMINDER_CHANNELS, correlation_id=correlation_id, key=key)


class Scheduler:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        offsets_s: Sequence[int],
        batch_size: int = 500,
        max_sleep_s: float = 60.0,
        clock: Clock = system_clock,
    ) -> None:
        self._engine = engine
        self._offsets = sorted(set(offsets_s))
        self._batch_size = batch_size
        self._max_sleep_s = max_sleep_s
        self._clock = clock
        self._wake = asyncio.Event()
        self.metrics = SchedulerMetrics()
        #: a window of the last pass was left with attendees owed (rows held
        #: by other transactions): come back in a second, not at the next due time
        self.unfinished = False

    def wake(self, *_: object) -> None:
        """Recompute now (an asyncpg listener callback, or a test)."""
        self._wake.set()

    async def send_due_reminders(self) -> int:
        """Work through every window due at the clock's now; how many reminders were new."""
        now = self._clock()
        self.unfinished = False
        async with UnitOfWork(self._engine) as uow:
            due = await uow.reminders.due_windows(
                now=now, offsets=self._offsets, limit=WINDOWS_PER_PASS
            )
            # after downtime or a late move most windows may be superseded: close
            # them all at once, not in a transaction each
            await uow.reminders.finish(
                [window for window in due if window["superseded"]], now=now, superseded=True
            )
            await uow.commit()
        sent = 0
        for window in due:
            if not window["superseded"]:
                sent += await self._work_through(window, now)
        self.unfinished = self.unfinished or len(due) == WINDOWS_PER_PASS
        return sent

    async def _work_through(self, window: RowMapping, now: datetime) -> int:
        """One window, a transaction per batch; finished once nobody is owed a reminder."""
        offset_s: int = window["offset_s"]
        sent = 0
        while True:
            async with UnitOfWork(self._engine) as uow:
                attendees = await uow.reminders.claim_attendees(
                    window, now=now, limit=self._batch_size
                )
                new = await uow.reminders.record_sent(attendees, offset_s=offset_s, now=now)
                await uow.outbox.add(
                    *(
                        message
                        for row in attendees
                        if (row["event_id"], row["user_id"], offset_s) in new
                        for message in _reminder_commands(row, offset_s)
                    )
                )
                more = len(attendees) == self._batch_size
                if not more:
                    if await uow.reminders.owed(window) == 0:
                        await uow.reminders.finish([window], now=now, superseded=False)
                    else:
                        # rows another transaction holds (skipped) or an event just moved
                        self.unfinished = True
                await uow.commit()
            sent += len(new)
            if not more:
                return sent

    async def fan_out_announcements(self) -> int:
        """Queue announcements batch by batch until none is waiting; recipients queued."""
        queued = 0
        while (n := await self.fan_out_one_batch()) is not None:
            queued += n
        return queued

    async def fan_out_one_batch(self) -> int | None:
        return await fan_out_batch(self._engine, batch_size=self._batch_size, now=self._clock())

    async def run_once(self) -> Pass:
        """Due reminders, then announcement batches with due reminders between them:
        a 50,000-attendee announcement never holds up a reminder that falls due."""
        reminders = await self.send_due_reminders()
        announced = 0
        while (n := await self.fan_out_one_batch()) is not None:
            announced += n
            reminders += await self.send_due_reminders()
        return Pass(reminders=reminders, announced=announced)

    async def seconds_until_next_due(self, since: datetime | None = None) -> float:
        """Seconds to sleep: until the first window due after ``since`` (the last
        pass's now, so one falling due during the pass is not skipped), capped."""
        since = since or self._clock()
        async with UnitOfWork(self._engine) as uow:
            next_due = await uow.reminders.next_due(now=since, offsets=self._offsets)
        sleep = self._max_sleep_s
        if next_due is not None:
            sleep = min(sleep, max(0.0, (next_due - self._clock()).total_seconds()))
        if self.unfinished:
            sleep = min(sleep, RETRY_UNFINISHED_S)
        return sleep

    async def run(self, stop: asyncio.Event) -> None:
        """Pass, sleep until the next due reminder (or a wake-up), repeat until ``stop``."""
        backoff = Backoff(first_s=1.0)
        while not stop.is_set():
            self._wake.clear()
            started = self._clock()
            try:
                done = await self.run_once()
                sleep = await self.seconds_until_next_due(since=started)
                backoff.reset()
            except _PASS_TROUBLE as exc:
                # a restart, a lost connection, a deadlock, a pool with no
                # connection free in DB_POOL_TIMEOUT_S: all worth another pass
                sleep = backoff.next_delay()
                log.warning("scheduler pass failed, retrying in %.0fs: %r", sleep, exc)
                self.metrics.failures.inc()
            else:
                self.metrics.passes.inc()
                self.metrics.reminders.inc(done.reminders)
                self.metrics.recipients.inc(done.announced)
                if done.reminders or done.announced:
                    log.info(
                        "sent %d reminders, queued %d announcement recipients",
                        done.reminders,
                        done.announced,
                    )
            await _first_of(self._wake, stop, seconds=sleep)


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    """Return when any of ``events`` is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class SchedulerService:
    """The scheduler as its process runs it: passes, woken by its NOTIFY listener.

    Ready while the listener lives; a pass that fails unexpectedly raises out
    of :meth:`run`, which ends the process.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        dsn: str,
        *,
        pruning: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self._dsn = dsn
        self._pruning = pruning
        self._listening: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None

    def ready(self) -> bool:
        listening = self._listening is not None and not self._listening.done()
        return listening and (self._pruner is None or not self._pruner.done())

    def metrics(self) -> bytes:
        return self.scheduler.metrics.exposition()

    async def run(self, stop: asyncio.Event) -> None:
        self._listening = asyncio.create_task(
            keep_listening(self._dsn, "scheduler", self.scheduler.wake, stop)
        )
        if self._pruning is not None:
            self._pruner = asyncio.create_task(self._pruning(stop))
        background = {t for t in (self._listening, self._pruner) if t is not None}
        try:
            await self.scheduler.run(stop)
        finally:
            for task in background:
                task.cancel()
            await asyncio.wait(background)


@asynccontextmanager
async def bootstrap(
    settings: Settings, *, engine: AsyncEngine | None = None, clock: Clock = system_clock
) -> AsyncIterator[SchedulerService]:
    """The scheduler on ``engine`` (built here, and disposed, unless given)."""
    async with AsyncExitStack() as opened:
        if engine is None:
            engine = create_engine(settings)
            opened.push_async_callback(engine.dispose)
        scheduler = Scheduler(
            engine,
            offsets_s=settings.reminder_offsets,
            batch_size=settings.announcement_batch_size,
            max_sleep_s=settings.scheduler_max_sleep_s,
            clock=clock,
        )
        log.info("scheduler running (reminders at %s s before start)", settings.reminder_offsets)
        pruning = partial(
            keep_pruning,
            engine,
            idempotency_key_retention_s=settings.idempotency_key_retention,
            inbox_retention_s=settings.inbox_retention,
        )
        yield SchedulerService(scheduler, settings.asyncpg_dsn, pruning=pruning)


def main() -> None:
    settings = Settings()
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
    run_service("scheduler", settings, lambda: bootstrap(settings), metrics_port=port)


if __name__ == "__main__":
    main()
