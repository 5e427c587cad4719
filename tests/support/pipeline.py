"""The calendar's background processes run inside a test, on resources of the test's own.

    async with own_database(env) as url, own_vhost(env) as broker:
        settings = calendar_settings_for(url, broker)
        async with running_relay(settings), running_followups(settings):
            ...

(``own_database`` and ``own_vhost`` live in ``tests.support.services``.)
Each is what ``python -m calendar_service.relay`` / ``.followups`` runs,
started in the background of the test's event loop and stopped gracefully.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from calendar_service.config import Settings
from calendar_service.delivery_reports import build_runtime
from calendar_service.relay import RelayOptions, bootstrap
from shared.service.process import serve
from tests.support.amqp import channel_as, get_one
from tests.support.api import SUITE_LIMITS
from tests.support.runtime import running
from tests.support.services import BrokerEnv, as_role

T = TypeVar("T")


def calendar_settings_for(database_url: str, broker: BrokerEnv, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": database_url,
        "amqp_url": broker.amqp_url("calendar"),
        "db_pool_size": 5,
        **SUITE_LIMITS,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running_relay(
    settings: Settings, options: RelayOptions | None = None
) -> AsyncIterator[None]:
    """The outbox relay, publishing until the block ends."""
    stop = asyncio.Event()
    options = options or RelayOptions(idle_poll_s=0.5)
    task = asyncio.create_task(
        serve(lambda: bootstrap(settings, options=options), stop, metrics_port=None)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


@asynccontextmanager
async def running_followups(settings: Settings) -> AsyncIterator[None]:
    """The follow-up consumer, recording delivery status until the block ends (as its role)."""
    dsn = as_role(settings.asyncpg_dsn, "rsvp_reports")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    try:
        async with running(build_runtime(settings, pool, metrics_port=None)):
            yield
    finally:
        await pool.close()


async def take_all(
    broker: BrokerEnv, user: str, queue: str, *, idle: float = 0.3
) -> list[AbstractIncomingMessage]:
    """Every message waiting in ``queue``, acked; stops after ``idle`` s of silence."""
    messages: list[AbstractIncomingMessage] = []
    async with channel_as(broker.amqp_url(user)) as channel:
        while (message := await get_one(channel, queue, timeout=idle)) is not None:
            messages.append(message)
            await message.ack()
    return messages
