"""Take dead letters from every DLQ, store them a batch at a time, then ack them.

One channel consumes all the DLQs with a prefetch of two batches. Deliveries
queue up in arrival order; the store loop takes up to a batch, archives it in
one statement, commits, and acks the last one with ``multiple=True`` (every
earlier delivery tag of the channel is in this batch or an earlier, already
acked one). A crash after the commit and before the ack redelivers the batch,
and the unique key of the store turns the second insert into a no-op. If the
database is away the batch stays unacked and is retried with back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated
from urllib.parse import urlsplit

import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from calendar_service.config import Settings, parse_duration, with_credentials
from shared.dlq.archive import ArrivedLetter, archive, prune_settled
from shared.messaging.topology import dead_letter_queues
from shared.production import development_password
from shared.service.backoff import Backoff, sleep_unless_stopped
from shared.service.broker import connect_broker
from shared.service.database import DATABASE_TROUBLE, bounded_pool
from shared.service.metrics import forget_pool, watch_pool
from shared.service.process import run_service, run_until_stopped
from shared.settings import split_url_list

log = logging.getLogger(__name__)
DEFAULT_METRICS_PORT = 9106


class ArchiverSettings(Settings):
    #: Replayed and deleted dead letters are kept this long ("30d"; units s, m, h, d).
    dead_letter_retention: Annotated[int, NoDecode] = 30 * 86400
    #: Deliveries stored per statement (and twice this many in flight).
    dead_letter_batch: int = Field(default=500, ge=1, le=5000)
    #: How often retention runs.
    dead_letter_prune_every_s: float = Field(default=300.0, gt=0)

    @field_validator("dead_letter_retention", mode="before")
    @classmethod
    def _parse_retention(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @property
    def archiver_amqp_url(self) -> str:
        """``AMQP_URL``'s broker and vhost as ``RABBITMQ_MANAGEMENT_URL``'s user (``ops``),
        the operator account that may read every DLQ."""
        operator = urlsplit(split_url_list(self.rabbitmq_management_url)[0])
        return with_credentials(self.amqp_url, operator.username or "", operator.password)

    def production_problems(self) -> list[str | None]:
        account = development_password("RABBITMQ_MANAGEMENT_URL", self.rabbitmq_management_url)
        return [*super().production_problems(), account]


def arrived(message: AbstractIncomingMessage, queue: str) -> ArrivedLetter:
    properties = {
        "content_type": message.content_type,
        "correlation_id": message.correlation_id,
        "app_id": message.app_id,
        "timestamp": message.timestamp,
    }
    return ArrivedLetter.read(
        queue,
        dict(message.headers),
        message.body,
        message_id=message.message_id,
        message_type=message.type,
        properties={k: v for k, v in properties.items() if v is not None},
    )


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


class Archiver:
    """Batches deliveries of every DLQ into the store; acks what was committed."""

    def __init__(self, pool: asyncpg.Pool, *, batch: int, stored: Counter, duplicates: Counter):
        self._pool = pool
        self._batch = batch
        self._waiting: deque[tuple[str, AbstractIncomingMessage]] = deque()
        self._arrived = asyncio.Event()
        self.stored = stored
        self.duplicates = duplicates

    @property
    def waiting(self) -> int:
        """Deliveries taken from their queues and not yet stored and acked."""
        return len(self._waiting)

    def take(self, queue: str) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """The consumer callback of ``queue``: deliveries wait in arrival order."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._waiting.append((queue, message))
            self._arrived.set()

        return on_message

    async def store_until(self, stop: asyncio.Event) -> None:
        backoff = Backoff(first_s=0.5)
        while not stop.is_set():
            if not self._waiting:
                self._arrived.clear()
                await _first_of(self._arrived, stop)
                continue
            batch = [self._waiting[i] for i in range(min(self._batch, len(self._waiting)))]
            try:
                new = await archive(self._pool, [arrived(m, q) for q, m in batch])
            except DATABASE_TROUBLE as exc:
                delay = backoff.next_delay()
                log.warning("cannot store dead letters, retrying in %.1fs: %r", delay, exc)
                await sleep_unless_stopped(delay, stop)
                continue
            backoff.reset()
            for _ in batch:
                self._waiting.popleft()
            try:
                await batch[-1][1].ack(multiple=True)
            except Exception as exc:
                # the channel went away (the connection is re-made): the broker
                # redelivers these, and the store's unique key absorbs them
                log.warning("could not ack %d stored dead letters: %r", len(batch), exc)
            self.stored.inc(new)
            self.duplicates.inc(len(batch) - new)


class ArchiverService:
    """The archiver and its retention as a service of the process skeleton."""

    def __init__(
        self,
        settings: ArchiverSettings,
        pool: asyncpg.Pool,
        broker: AbstractRobustConnection | None = None,
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._broker = broker
        self._consuming = False
        self._archiver: Archiver | None = None
        self.registry = CollectorRegistry()
        # exported from the start, before the broker answers, so dashboards see zeros
        self._stored = Counter(
            "dead_letters_archived_total", "Dead letters stored", registry=self.registry
        )
        self._duplicates = Counter(
            "dead_letters_duplicate_total",
            "Redelivered dead letters that were stored already",
            registry=self.registry,
        )

    @property
    def waiting(self) -> int:
        """Deliveries taken from their queues and not yet stored and acked."""
        return self._archiver.waiting if self._archiver is not None else 0

    async def close_broker(self) -> None:
        if self._broker is not None:
            await self._broker.close()

    def ready(self) -> bool:
        return self._consuming and self._broker is not None and not self._broker.is_closed

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    async def run(self, stop: asyncio.Event) -> None:
        if self._broker is None:
            url = self._settings.archiver_amqp_url
            self._broker = await connect_broker(url, "dead-letter-archiver", stop=stop)
            if self._broker is None:
                return
        batch = self._settings.dead_letter_batch
        archiver = self._archiver = Archiver(
            self._pool, batch=batch, stored=self._stored, duplicates=self._duplicates
        )
        channel = await self._broker.channel()
        await channel.set_qos(prefetch_count=2 * batch)
        for name in dead_letter_queues():
            queue = await channel.get_queue(name, ensure=False)
            await queue.consume(archiver.take(name))
        self._consuming = True
        log.info("archiving %d dead-letter queues (batch %d)", len(dead_letter_queues()), batch)
        pruning = asyncio.create_task(self._prune_until(stop))
        try:
            await run_until_stopped(archiver.store_until(stop), stop, on_stop=lambda: None)
        finally:
            self._consuming = False
            pruning.cancel()
            await asyncio.wait({pruning})
            # unacked deliveries go back to their DLQs with the channel
            await channel.close()

    async def _prune_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                removed = await prune_settled(
                    self._pool, older_than_s=self._settings.dead_letter_retention
                )
                if removed:
                    log.info("retention removed %d settled dead letters", removed)
            except DATABASE_TROUBLE as exc:
                log.warning("retention pass failed: %r", exc)
            await sleep_unless_stopped(self._settings.dead_letter_prune_every_s, stop)


@asynccontextmanager
async def bootstrap(
    settings: ArchiverSettings,
    *,
    pool: asyncpg.Pool | None = None,
    broker: AbstractRobustConnection | None = None,
) -> AsyncIterator[ArchiverService]:
    """The archiver's adapters: a pool (built here unless given) and a broker connection
    as the ``ops`` user (made in ``run``, with back-off, unless given); closed on exit."""
    async with AsyncExitStack() as opened:
        if pool is None:
            pool = await bounded_pool(
                settings.asyncpg_dsn,
                acquire_timeout_s=settings.db_pool_timeout_s,
                min_size=1,
                max_size=3,
                server_settings=settings.db_server_settings,
            )
            opened.push_async_callback(pool.close)
        watch_pool("dead_letters", pool)
        opened.callback(forget_pool, "dead_letters")
        service = ArchiverService(settings, pool, broker)
        if broker is None:
            opened.push_async_callback(service.close_broker)
        yield service


def main() -> None:
    settings = ArchiverSettings()
    port = settings.metrics_port if settings.metrics_port is not None else DEFAULT_METRICS_PORT
    run_service("deadletters", settings, lambda: bootstrap(settings), metrics_port=port)
