"""Per-run resources on the real servers: a RabbitMQ vhost and a database.

Names carry the creation time (``rsvp_test_<epoch>_<hex>``) so that a run
which died before cleaning up is swept by a later one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import asyncpg

from calendar_service.config import with_credentials
from calendar_service.migrate import upgrade_async
from devtools.env import EnvSettings, _postgres_dsn
from shared.management import ManagementClient
from shared.messaging.definitions import DEFINITIONS_PATH, retarget
from shared.settings import split_url_list

PREFIX = "rsvp_test_"
STALE_AFTER_S = 3 * 3600


def new_resource_name() -> str:
    return f"{PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"


def _is_stale(name: str) -> bool:
    try:
        created = int(name.removeprefix(PREFIX).split("_", 1)[0])
    except ValueError:
        return False
    return time.time() - created > STALE_AFTER_S


@dataclass(frozen=True)
class BrokerEnv:
    """A vhost holding the product's topology, for one test run or one test."""

    vhost: str
    host: str
    port: int
    admin_url: str

    def amqp_url(self, user: str) -> str:
        """AMQP URL as a given broker user (dev password = user name)."""
        return f"amqp://{user}:{user}@{self.host}:{self.port}/{quote(self.vhost, safe='')}"


async def create_broker_vhost(settings: EnvSettings, name: str | None = None) -> BrokerEnv:
    vhost = name or new_resource_name()
    definitions = retarget(
        json.loads(DEFINITIONS_PATH.read_text()), vhost, description="pytest run"
    )
    async with ManagementClient(settings.rabbitmq_admin_url) as admin:
        await admin.import_definitions(definitions)
    amqp = urlsplit(split_url_list(settings.amqp_url)[0])
    return BrokerEnv(
        vhost=vhost,
        host=amqp.hostname or "127.0.0.1",
        port=amqp.port or 5672,
        admin_url=settings.rabbitmq_admin_url,
    )


async def delete_broker_vhost(settings: EnvSettings, vhost: str) -> None:
    async with ManagementClient(settings.rabbitmq_admin_url) as admin:
        await admin.delete_vhost(vhost)


async def sweep_stale_vhosts(settings: EnvSettings) -> None:
    async with ManagementClient(settings.rabbitmq_admin_url) as admin:
        for vhost in await admin.vhosts():
            if vhost["name"].startswith(PREFIX) and _is_stale(vhost["name"]):
                await admin.delete_vhost(vhost["name"])


async def create_database(settings: EnvSettings, name: str) -> str:
    """Create an empty database; return its SQLAlchemy URL."""
    conn = await asyncpg.connect(_postgres_dsn(settings.database_url, "postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        for (stale,) in await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", PREFIX + "%"
        ):
            if _is_stale(stale):
                await conn.execute(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)')
    finally:
        await conn.close()
    url = urlsplit(_postgres_dsn(settings.database_url, name))
    return url._replace(scheme="postgresql+asyncpg").geturl()


async def drop_database(settings: EnvSettings, name: str) -> None:
    conn = await asyncpg.connect(_postgres_dsn(settings.database_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def as_role(database_url: str, role: str) -> str:
    """The same database as one service's own role (migration 0011: password = its name)."""
    return with_credentials(database_url, role, role)


@asynccontextmanager
async def own_database(env: EnvSettings) -> AsyncIterator[str]:
    """A migrated database nobody else writes to; dropped afterwards."""
    name = new_resource_name()
    url = await create_database(env, name)
    try:
        await upgrade_async(url)
        yield url
    finally:
        await drop_database(env, name)


@asynccontextmanager
async def own_vhost(env: EnvSettings) -> AsyncIterator[BrokerEnv]:
    """A vhost with the product topology and empty queues; deleted afterwards."""
    broker = await create_broker_vhost(env)
    try:
        yield broker
    finally:
        await delete_broker_vhost(env, broker.vhost)
