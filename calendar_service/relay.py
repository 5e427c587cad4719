"""`python -m calendar_service.relay`: publish outbox rows to RabbitMQ (design §6.1).

Each pass claims a batch of unpublished rows with ``FOR UPDATE SKIP LOCKED``
(so several relays share the work without publishing a row twice), publishes
them all with publisher confirms, and marks as sent only the rows the broker
confirmed, in the same transaction that holds their locks. A nack, a timeout
or a dropped connection leaves the rest unpublished for the next pass: a row
may be published twice (a crash between confirm and commit) but never lost.
The relay sleeps on ``LISTEN outbox`` rather than polling; the trigger on the
outbox table wakes it at commit. While the broker is away it backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import aio_pika
import asyncpg
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from calendar_service.config import Settings
from shared.messaging.codec import stored_body_to_amqp
from shared.messaging.health import HealthServer
from shared.messaging.publisher import Publisher

log = logging.getLogger(__name__)
DEFAULT_METRICS_PORT = 9101

CLAIM = """
SELECT id, exchange, routing_key, body, created_at
FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""
MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
COUNT_FAILED = "UPDATE outbox SET attempts = attempts + 1 WHERE id = ANY($1::bigint[])"
PRUNE = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1) LIMIT 5000
)
"""


@dataclass(frozen=True)
class RelayOptions:
    batch_size: int = 200
    #: Fallback poll, in case a NOTIFY is missed (e.g. LISTEN connection re-made).
    idle_poll_s: float = 5.0
    max_backoff_s: float = 30.0
    #: Published rows are kept this long for audit, then pruned.
    retention_s: float = 7 * 24 * 3600.0


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


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        options: RelayOptions | None = None,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
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

    async def publish_pending_outbox(self) -> PassResult:
        """One pass: claim, publish with confirms, mark the confirmed ones."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(CLAIM, self._options.batch_size)
            if not rows:
                return PassResult(0, 0)
            outcomes = await asyncio.gather(
                *(self._publish_row(row) for row in rows), return_exceptions=True
            )
            confirmed = [r["id"] for r, o in zip(rows, outcomes, strict=True) if o is None]
            failed = [r["id"] for r, o in zip(rows, outcomes, strict=True) if o is not None]
            if confirmed:
                await connection.execute(MARK_PUBLISHED, confirmed)
                now = datetime.now(UTC)
                for row, outcome in zip(rows, outcomes, strict=True):
                    if outcome is None:
                        self.metrics.lag.observe((now - row["created_at"]).total_seconds())
                self.metrics.published.inc(len(confirmed))
            if failed:
                self.metrics.failed.inc(len(failed))
                await connection.execute(COUNT_FAILED, failed)
                first_error = next(o for o in outcomes if o is not None)
                log.warning(
                    "%d of %d outbox messages not confirmed; they stay for the next pass: %r",
                    len(failed),
                    len(rows),
                    first_error,
                )
            return PassResult(len(rows), len(confirmed))

    async def _publish_row(self, row: asyncpg.Record) -> None:
        message = stored_body_to_amqp(row["body"])
        await self._publisher.publish_raw(message, row["exchange"], row["routing_key"])

    async def prune(self) -> int:
        async with self._pool.acquire() as connection:
            status = await connection.execute(PRUNE, self._options.retention_s)
        return int(status.split()[-1])

    async def run(self) -> None:
        """Publish until stopped, sleeping on NOTIFY between bursts."""
        backoff = 0.5
        passes = 0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                result = await self.publish_pending_outbox()
            except (OSError, asyncpg.PostgresError, aio_pika.exceptions.AMQPError) as exc:
                log.warning("relay pass failed, retrying in %.1fs: %r", backoff, exc)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._options.max_backoff_s)
                continue
            passes += 1
            if passes % 1000 == 0:
                with contextlib.suppress(OSError, asyncpg.PostgresError):
                    await self.prune()
            if result.claimed and result.published == 0:
                # the broker took nothing: it is away or refusing; back off
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._options.max_backoff_s)
            elif result.claimed == self._options.batch_size:
                backoff = 0.5  # a full batch: there is probably more waiting
            else:
                backoff = 0.5
                await self._sleep(self._options.idle_poll_s)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)


async def _listen(dsn: str, relay: OutboxRelay) -> asyncpg.Connection:
    """A connection of its own that only waits for NOTIFYs."""
    connection: asyncpg.Connection = await asyncpg.connect(dsn)
    await connection.add_listener("outbox", relay.wake)
    return connection


async def connect_broker(
    url: str, name: str, stop: asyncio.Event | None = None
) -> AbstractRobustConnection | None:
    """Connect, retrying with back-off while the broker is away; None if stopped first.

    ``connect_robust`` reconnects by itself once connected, but its first
    connection must succeed: a relay started during an outage waits here.
    """
    delay = 0.5
    while stop is None or not stop.is_set():
        try:
            return await aio_pika.connect_robust(url, client_properties={"connection_name": name})
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            log.warning("broker unreachable, retrying in %.1fs: %r", delay, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for((stop or asyncio.Event()).wait(), timeout=delay)
            delay = min(delay * 2, 30.0)
    return None


async def run_relay(
    settings: Settings,
    *,
    options: RelayOptions | None = None,
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
) -> None:
    """Connect, publish until ``stop`` is set (or forever), close everything."""
    broker = await connect_broker(settings.amqp_url, "outbox-relay", stop)
    if broker is None:
        return
    pool = await asyncpg.create_pool(settings.asyncpg_dsn, min_size=2, max_size=4)
    try:
        channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
        relay = OutboxRelay(pool, Publisher(channel), options)
        listener = await _listen(settings.asyncpg_dsn, relay)
        health = None
        if metrics_port is not None:
            health = HealthServer(
                ready=lambda: not broker.is_closed and not listener.is_closed(),
                metrics=relay.metrics.exposition,
                port=metrics_port,
            )
            await health.start()
        task = asyncio.create_task(relay.run())
        log.info("outbox relay publishing (batch %d)", relay.batch_size)
        try:
            if stop is None:
                await task
            else:
                await stop.wait()
                relay.stop()
                await task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await listener.close()
            if health is not None:
                await health.close()
    finally:
        await broker.close()
        await pool.close()


def main() -> None:
    from shared.logs import configure_logging
    from shared.process import run_until_signalled

    settings = Settings()
    configure_logging("relay", settings.log_level, settings.log_format)
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
    run_until_signalled(lambda stop: run_relay(settings, stop=stop, metrics_port=port))


if __name__ == "__main__":
    main()
