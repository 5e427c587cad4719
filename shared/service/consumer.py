"""What the email, push and delivery-report consumers share in their bootstrap.

Each consumer differs only in its adapters and handlers; the inbox pool, the
runtime's knobs and how the skeleton runs the runtime are the same, so they
live here once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import asyncpg

from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.service.database import bounded_pool
from shared.service.metrics import forget_pool, watch_pool
from shared.service.process import run_until_stopped


class ConsumerSettings(Protocol):
    """The settings a consumer's runtime is built from (each consumer's Settings has them)."""

    @property
    def amqp_url(self) -> str: ...

    @property
    def asyncpg_dsn(self) -> str: ...

    @property
    def db_server_settings(self) -> dict[str, str]: ...

    @property
    def db_connect_timeout_s(self) -> float: ...

    @property
    def db_pool_timeout_s(self) -> float: ...

    @property
    def prefetch(self) -> int: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def inbox_gather_ms(self) -> int: ...

    @property
    def metrics_port(self) -> int | None: ...


@asynccontextmanager
async def inbox_pool(settings: ConsumerSettings, *, spare: int) -> AsyncIterator[asyncpg.Pool]:
    """A pool with two connections for the inbox (the claims and the records of all
    messages in flight share them) plus ``spare`` for what the handlers query themselves."""
    pool = await bounded_pool(
        settings.asyncpg_dsn,
        acquire_timeout_s=settings.db_pool_timeout_s,
        min_size=min(2, spare),
        max_size=2 + spare,
        server_settings=settings.db_server_settings,
        timeout=settings.db_connect_timeout_s,
    )
    watch_pool("inbox", pool)
    try:
        yield pool
    finally:
        forget_pool("inbox")
        await pool.close()


async def nothing_to_reset(connection: asyncpg.Connection) -> None:
    """A pool's ``reset`` for connections that hold no lock, cursor, listener or setting.

    asyncpg resets a connection on every release: one more round trip to
    PostgreSQL, pure cost when single statements left nothing behind.
    """


def consumer_runtime(
    name: str, producer: str, settings: ConsumerSettings, pool: asyncpg.Pool
) -> ConsumerRuntime:
    """A runtime named ``name`` with its inbox in ``pool``; the caller subscribes its handlers."""
    return ConsumerRuntime(
        name,
        settings.amqp_url,
        inbox=PostgresInbox(
            pool, gather_s=settings.inbox_gather_ms / 1000, gather_max=settings.concurrency
        ),
        producer=producer,
        prefetch=settings.prefetch,
        concurrency=settings.concurrency,
        metrics_port=settings.metrics_port,
    )


class ConsumerService:
    """A subscribed runtime as a service of the skeleton; the runtime serves its own health."""

    def __init__(self, runtime: ConsumerRuntime) -> None:
        self.runtime = runtime

    def ready(self) -> bool:
        return self.runtime.ready

    def metrics(self) -> bytes:
        return self.runtime.metrics.exposition()

    async def run(self, stop: asyncio.Event) -> None:
        await run_until_stopped(self.runtime.run(), stop, on_stop=self.runtime.stop)
