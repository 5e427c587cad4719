"""Fixtures shared by every test layer.

Integration and end-to-end tests talk to the real PostgreSQL, RabbitMQ and
Redis named by the same environment variables the services read. Each test
run gets its own RabbitMQ vhost (loaded from broker/definitions.json) and its
own database, removed again at the end, so runs never see each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from calendar_service.migrate import upgrade_async
from devtools.env import EnvSettings
from tests.support.services import (
    BrokerEnv,
    create_broker_vhost,
    create_database,
    delete_broker_vhost,
    drop_database,
    new_resource_name,
    sweep_stale_vhosts,
)


@pytest.fixture(scope="session")
def env_settings() -> EnvSettings:
    return EnvSettings()


@pytest.fixture(scope="session")
async def broker(env_settings: EnvSettings) -> AsyncIterator[BrokerEnv]:
    """The run's own vhost with the product topology; shared by the run."""
    await sweep_stale_vhosts(env_settings)
    env = await create_broker_vhost(env_settings)
    yield env
    await delete_broker_vhost(env_settings, env.vhost)


@pytest.fixture
async def fresh_broker(env_settings: EnvSettings) -> AsyncIterator[BrokerEnv]:
    """A vhost of its own for one test that must see empty queues."""
    env = await create_broker_vhost(env_settings)
    yield env
    await delete_broker_vhost(env_settings, env.vhost)


@pytest.fixture(scope="session")
async def database_url(env_settings: EnvSettings) -> AsyncIterator[str]:
    """The run's own database, migrated to head by the real alembic migrations."""
    name = new_resource_name()
    url = await create_database(env_settings, name)
    await upgrade_async(url)
    yield url
    await drop_database(env_settings, name)
