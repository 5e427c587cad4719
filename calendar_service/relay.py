"""`python -m calendar_service.relay`: publish outbox rows to RabbitMQ (design §6.1).

Each pass claims a batch of unpublished rows and marks them published in one
statement (``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING``,
so several relays share the work without publishing a row twice), publishes
them all with publisher confirms, unmarks the rows the broker did not confirm,
and only then commits: a mark is visible only once its confirm is in. A
timeout or a dropped connection leaves those rows for the next pass; a row
may be published twice (a crash between confirm and commit) but never lost.
The relay sleeps on ``LISTEN outbox`` rather than polling; the trigger on the
outbox table wakes it at commit. While the broker is away it backs off, and a
NOTIFY does not cut that back-off short (it would only re-claim the batch).

A row the broker refuses (returned as unroutable, nacked because a queue is
full, its exchange missing) is retried after a growing delay and parked after
``max_attempts`` refusals, so it cannot hold back the rows behind it. Missing
exchanges are looked up before publishing, on a channel of their own: a
publish to one would close the publishing channel and fail the whole batch.
Figures behind the choices: ``bench/relay_perf_log.md``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from calendar_service.config import Settings
from shared.messaging.codec import stored_body_to_amqp
from shared.messaging.publisher import Publisher, PublishNotConfirmed
from shared.service.backoff import Backoff
from shared.service.broker import connect_broker
from shared.service.database import DATABASE_TROUBLE, bounded_pool
from shared.service.listener import keep_listening
from shared.service.metrics import forget_pool, watch_pool
from shared.service.process import run_service, run_until_stopped

log = logging.getLogger(__name__)

#: What fails a pass without ending the relay: the database or the broker away.
_PASS_TROUBLE: tuple[type[BaseException], ...] = (*DATABASE_TROUBLE, aio_pika.exceptions.AMQPError)

#: A connection of its own or one lent by a pool.
Connection = asyncpg.Connection | PoolConnectionProxy
DEFAULT_METRICS_PORT = 9101

#: Claims a batch and marks it published in one statement; the transaction
#: commits only after the broker's confirms, so the mark of a row the broker
#: never confirmed is undone by UNMARK_FAILED (or by the rollback of a crash).
CLAIM_AND_MARK = """
UPDATE outbox SET published_at = now()
WHERE id IN (
    SELECT id FROM outbox
    WHERE published_at IS NULL AND parked_at IS NULL
      AND (retry_after IS NULL OR retry_after <= now())
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, exchange, routing_key, body, created_at
"""
#: The broker never saw these (it is away): they go back as they were.
UNMARK_FAILED = """
UPDATE outbox SET published_at = NULL WHERE id = ANY($1::bigint[])
"""
#: The broker refused these: count the refusal, retry later, park at the limit.
#: $2 reasons, $3 the first retry delay (doubling per refusal), $4 the limit.
UNMARK_REFUSED = """
UPDATE outbox o SET published_at = NULL,
    attempts = o.attempts + 1,
    last_error = r.reason,
    retry_after = now() + make_interval(secs => least($3 * 2 ^ o.attempts, 300)),
    parked_at = CASE WHEN o.attempts + 1 >= $4 THEN now() END
FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)
WHERE o.id = r.id
RETURNING o.id, o.exchange, o.routing_key, o.attempts, o.parked_at IS NOT NULL AS parked
"""
PRUNE = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1) LIMIT 5000
)
"""


#: A pass's commit only records that rows were published, so it need not wait
#: for the WAL to reach disk (10 ms and more here, the pass's longest step, and
#: rows waiting meanwhile). Should PostgreSQL crash before the flush, the marks
#: are lost and those rows are published again: at least once, never lost.
MARK_WITHOUT_FSYNC = {"synchronous_commit": "off"}


@dataclass(frozen=True)
class RelayOptions:
    batch_size: int = 200
    #: Fallback poll, in case a NOTIFY is missed (e.g. LISTEN connection re-made).
    idle_poll_s: float = 5.0
    #: When commits arrive while a pass runs, wait this long before the next
    #: one, so that a NOTIFY storm makes fewer passes of more rows; a commit
    #: into a quiet relay is published at once.
    coalesce_s: float = 0.005
    max_backoff_s: float = 30.0
    #: Published rows are kept this long for audit, then pruned.
    retention_s: float = 7 * 24 * 3600.0
    #: Refusals after which a row is parked (``OUTBOX_MAX_ATTEMPTS``).
    max_attempts: int = 10
    #: A refused row waits this long before its next try, doubling per refusal.
    refusal_delay_s: float = 0.5


class ExchangeMissing(RuntimeError):
    """The row's exchange does not exist: publishing to it would close the channel."""


class ExchangeCheck:
    """Which exchanges exist, looked up passively on a throwaway channel.

    A publish to a missing exchange is a channel error in AMQP: the broker
    closes the publishing channel and every publish in flight on it fails.
    A passive declare fails the same way, but on a channel of its own.
    Exchanges found are remembered; missing ones are looked up again.
    """

    def __init__(self, open_channel: Callable[[], Awaitable[AbstractChannel]]) -> None:
        self._open_channel = open_channel
        self._known: set[str] = {""}  # the default exchange always exists

    async def missing(self, names: set[str]) -> set[str]:
        missing: set[str] = set()
        for name in names - self._known:
            try:
                channel = await self._open_channel()
            except (RuntimeError, aio_pika.exceptions.AMQPError):
                return missing  # the broker is away: the publishes will say so
            try:
                await channel.declare_exchange(name, passive=True)
                self._known.add(name)
            except ChannelClosed:  # NOT_FOUND closes the channel
                missing.add(name)
            finally:
                if not channel.is_closed:
                    await channel.close()
        return missing

    def forget(self) -> None:
        """Look every exchange up again (one may have been deleted since)."""
        self._known = {""}


class RelayMetrics:
    """Prometheus series of one relay, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.published = Counter(
            "outbox_published_total",
            "Outbox messages confirmed by the broker",
            registry=self.registry,
        )
        self.failed = Counter(
            "outbox_publish_failures_total",
            "Outbox messages the broker did not confirm (left for the next pass)",
            registry=self.registry,
        )
        self.parked = Counter(
            "outbox_parked_total",
            "Outbox messages parked after the broker refused them max_attempts times",
            registry=self.registry,
        )
        self.lag = Histogram(
            "outbox_publish_lag_seconds",
            "From the outbox row's commit to the broker's confirm",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=self.registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class PassResult:
    claimed: int
    published: int
    #: Of the unpublished, how many the broker refused (the rest: broker away).
    refused: int = 0


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        options: RelayOptions | None = None,
        metrics: RelayMetrics | None = None,
        exchanges: ExchangeCheck | None = None,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._exchanges = exchanges
        self._options = options or RelayOptions()
        self.metrics = metrics or RelayMetrics()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def batch_size(self) -> int:
        return self._options.batch_size

    def wake(self, *_: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def publish_pending_outbox(
        self, connection: Connection | None = None, *, begin_next: bool = False
    ) -> PassResult:
        """One pass: claim and mark a batch, publish it with confirms, unmark the unconfirmed.

        The pass runs in the transaction ``connection`` is already in, or begins
        one. With ``begin_next``, its commit begins the next pass's transaction
        in the same round trip (``COMMIT; BEGIN``): on loopback a round trip is
        a quarter of a one-row pass's CPU (``bench/relay_pass_cost.py``). Until
        that pass the transaction is empty (no snapshot, no xid): it holds
        nothing back.
        """
        if connection is None:
            async with self._pool.acquire() as acquired:
                return await self.publish_pending_outbox(acquired)
        if not connection.is_in_transaction():
            await connection.execute("BEGIN")
        try:
            rows = sorted(
                await connection.fetch(CLAIM_AND_MARK, self._options.batch_size),
                key=itemgetter("id"),
            )
            missing = await self._missing_exchanges(rows)
            outcomes: list[BaseException | None] = list(
                await asyncio.gather(
                    *(self._publish_row(row, missing) for row in rows), return_exceptions=True
                )
            )
            failed = [r["id"] for r, o in zip(rows, outcomes, strict=True) if o is not None]
            refused = [
                (r["id"], repr(o))
                for r, o in zip(rows, outcomes, strict=True)
                if isinstance(o, PublishNotConfirmed | ExchangeMissing)
            ]
            refused_ids = {i for i, _ in refused}
            if away := [i for i in failed if i not in refused_ids]:
                await connection.execute(UNMARK_FAILED, away)
                if self._exchanges is not None:
                    self._exchanges.forget()
            parked = await self._refuse(connection, refused) if refused else []
        except Exception:
            with contextlib.suppress(Exception):
                await connection.execute("ROLLBACK")  # the next pass starts clean
            raise
        await connection.execute("COMMIT; BEGIN" if begin_next else "COMMIT")
        if rows:
            self._observe(rows, outcomes, len(failed))
        self._report_parked(parked)
        return PassResult(len(rows), len(rows) - len(failed), len(refused))

    async def _missing_exchanges(self, rows: list[asyncpg.Record]) -> set[str]:
        if self._exchanges is None or not rows:
            return set()
        return await self._exchanges.missing({r["exchange"] for r in rows})

    async def _refuse(
        self, connection: Connection, refused: list[tuple[int, str]]
    ) -> list[dict[str, Any]]:
        """Count the broker's refusals; returns the rows this pass parked, with their reason."""
        ids, reasons = zip(*refused, strict=True)
        options = self._options
        updated = await connection.fetch(
            UNMARK_REFUSED, list(ids), list(reasons), options.refusal_delay_s, options.max_attempts
        )
        reason_of = dict(refused)
        return [{**dict(r), "reason": reason_of[r["id"]]} for r in updated if r["parked"]]

    def _report_parked(self, parked: list[dict[str, Any]]) -> None:
        for row in parked:
            log.error(
                "outbox row %d parked after %d refusals (%s/%s): %s; "
                "re-queue with: UPDATE outbox SET parked_at = NULL, attempts = 0, "
                "retry_after = NULL WHERE id = %d",
                row["id"],
                row["attempts"],
                row["exchange"] or "(default)",
                row["routing_key"],
                row["reason"],
                row["id"],
            )
        if parked:
            self.metrics.parked.inc(len(parked))

    def _observe(
        self, rows: list[asyncpg.Record], outcomes: list[BaseException | None], failed: int
    ) -> None:
        now = datetime.now(UTC)
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome is None:
                self.metrics.lag.observe((now - row["created_at"]).total_seconds())
        self.metrics.published.inc(len(rows) - failed)
        if failed:
            self.metrics.failed.inc(failed)
            log.warning(
                "%d of %d outbox messages not confirmed; they stay for the next pass: %r",
                failed,
                len(rows),
                next(o for o in outcomes if o is not None),
            )

    async def _publish_row(self, row: asyncpg.Record, missing: set[str]) -> None:
        if row["exchange"] in missing:
            raise ExchangeMissing(f"exchange {row['exchange']!r} does not exist")
        message = stored_body_to_amqp(row["body"])
        await self._publisher.publish_raw(message, row["exchange"], row["routing_key"])

    async def prune(self, connection: Connection) -> int:
        status = await connection.execute(PRUNE, self._options.retention_s)
        return int(status.split()[-1])

    async def run(self) -> None:
        """Publish until stopped, sleeping on NOTIFY between bursts.

        Every pass runs on one pooled connection, held while it works: giving
        it back after each pass would cost the pool's reset, a round trip.
        """
        backoff = Backoff(first_s=0.5, max_s=self._options.max_backoff_s)
        while not self._stopping.is_set():
            try:
                async with self._pool.acquire() as connection:
                    await self._publish_until_stopped(connection, backoff)
            # the connection closed under a pass, or left mid-error by a backend
            # terminated between two of its statements ("another operation is in
            # progress"): the pool drops it on release, the next pass takes a fresh one
            except _PASS_TROUBLE as exc:
                delay = backoff.next_delay()
                log.warning("relay pass failed, retrying in %.1fs: %r", delay, exc)
                await self._back_off(delay)

    async def _publish_until_stopped(self, connection: Connection, backoff: Backoff) -> None:
        try:
            await self._publish_passes(connection, backoff)
        finally:
            if not connection.is_closed() and connection.is_in_transaction():
                with contextlib.suppress(Exception):
                    await connection.execute("ROLLBACK")  # the next pass's, still empty

    async def _publish_passes(self, connection: Connection, backoff: Backoff) -> None:
        passes = 0
        while not self._stopping.is_set():
            self._wake.clear()
            result = await self.publish_pending_outbox(connection, begin_next=True)
            passes += 1
            if passes % 1000 == 0:
                await self._prune_between_passes(connection)
            if result.claimed and result.published == 0 and result.refused < result.claimed:
                # the broker took nothing and refused nothing: it is away; back off
                await self._back_off(backoff.next_delay())
                continue
            backoff.reset()
            if result.claimed == self._options.batch_size:
                continue  # a full batch: there is probably more waiting
            if self._wake.is_set():
                # commits came in while this pass ran: a burst; let the next
                # pass gather more of it rather than take one row each
                await asyncio.sleep(self._options.coalesce_s)
            else:
                await self._sleep(self._options.idle_poll_s)

    async def _prune_between_passes(self, connection: Connection) -> None:
        """Prune in the empty transaction begun for the next pass, and commit at once."""
        try:
            await self.prune(connection)
            await connection.execute("COMMIT; BEGIN")
        except asyncpg.PostgresError as exc:
            log.warning("pruning published outbox rows failed: %r", exc)
            await connection.execute("ROLLBACK; BEGIN")

    async def _back_off(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopped: a NOTIFY does not cut it short, since
        a pass now would only re-claim the batch the broker just failed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _sleep(self, seconds: float) -> None:
        """Sleep until woken or ``seconds`` have passed (a timeout, not a task, per sleep)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()


class RelayService:
    """The relay as its process runs it: connect, listen, publish until stopped.

    Its metrics exist from the start, so ``/metrics`` answers while the broker
    is still away; ``ready`` is true once connected, with the listener alive.
    """

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        options: RelayOptions | None = None,
        broker: AbstractRobustConnection | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._options = options
        self._broker = broker
        self._listening: asyncio.Task[None] | None = None
        self.relay_metrics = RelayMetrics()

    async def close_broker(self) -> None:
        if self._broker is not None:
            await self._broker.close()

    def ready(self) -> bool:
        broker, listening = self._broker, self._listening
        return (
            broker is not None
            and not broker.is_closed
            and listening is not None
            and not listening.done()
        )

    def metrics(self) -> bytes:
        return self.relay_metrics.exposition()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop``; a relay pass that dies unexpectedly raises here."""
        if self._broker is None:
            self._broker = await connect_broker(self._settings.amqp_url, "outbox-relay", stop=stop)
            if self._broker is None:
                return
        broker = self._broker
        channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
        relay = OutboxRelay(
            self._pool,
            Publisher(channel),
            self._options,
            self.relay_metrics,
            ExchangeCheck(lambda: broker.channel(publisher_confirms=False)),
        )
        self._listening = asyncio.create_task(
            keep_listening(self._settings.asyncpg_dsn, "outbox", relay.wake, stop)
        )
        log.info("outbox relay publishing (batch %d)", relay.batch_size)
        try:
            await run_until_stopped(relay.run(), stop, on_stop=relay.stop)
        finally:
            self._listening.cancel()
            await asyncio.wait({self._listening})


@asynccontextmanager
async def bootstrap(
    settings: Settings,
    *,
    options: RelayOptions | None = None,
    pool: asyncpg.Pool | None = None,
    broker: AbstractRobustConnection | None = None,
) -> AsyncIterator[RelayService]:
    """The relay's adapters: a pool (built here unless given) and a broker
    connection (made in ``run``, with back-off, unless given); closed on exit."""
    async with AsyncExitStack() as opened:
        if pool is None:
            pool = await bounded_pool(
                settings.asyncpg_dsn,
                acquire_timeout_s=settings.db_pool_timeout_s,
                min_size=2,
                max_size=4,
                server_settings={**settings.db_server_settings, **MARK_WITHOUT_FSYNC},
                timeout=settings.db_connect_timeout_s,
            )
            opened.push_async_callback(pool.close)
        watch_pool("outbox", pool)
        opened.callback(forget_pool, "outbox")
        service = RelayService(settings, pool, options=options, broker=broker)
        if broker is None:
            opened.push_async_callback(service.close_broker)
        yield service


def main() -> None:
    settings = Settings()
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
    options = RelayOptions(max_attempts=settings.outbox_max_attempts)
    run_service("relay", settings, lambda: bootstrap(settings, options=options), metrics_port=port)


if __name__ == "__main__":
    main()
