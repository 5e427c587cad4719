"""Fixtures shared by every test layer.

Integration and end-to-end tests talk to the real PostgreSQL, RabbitMQ and
Redis named by the same environment variables the services read. Each test
run gets its own RabbitMQ vhost (loaded from broker/definitions.json) and its
own database, removed again at the end, so runs never see each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.env import EnvSettings
from tests.support.services import (
    BrokerEnv,
    create_broker_vhost,
    delete_broker_vhost,
    own_database,
    own_vhost,
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
    async with own_vhost(env_settings) as env:
        yield env


@pytest.fixture(scope="session")
async def database_url(env_settings: EnvSettings) -> AsyncIterator[str]:
    """The run's own database, migrated to head by the real alembic migrations."""
    async with own_database(env_settings) as url:
        yield url
