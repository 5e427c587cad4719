"""Fixtures shared by every test layer.

Integration and end-to-end tests talk to the real PostgreSQL, RabbitMQ and
Redis named by the same environment variables the services read. Each test
run gets its own RabbitMQ vhost (loaded from broker/definitions.json) and its
own database, removed again at the end, so runs never see each other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
from tests.support.smtp import SmtpSink

CLUSTER_TESTS = Path(__file__).parent / "cluster"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/cluster (a three-node cluster of its own) runs only when named: `make test-cluster`."""
    if collection_path != CLUSTER_TESTS:
        return None
    named = (config.invocation_params.dir / arg.split("::")[0] for arg in config.args)
    return not any(CLUSTER_TESTS in (path.resolve(), *path.resolve().parents) for path in named)


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


@pytest.fixture
def mail() -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd) that keeps what it receives."""
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def system_database(env_settings: EnvSettings) -> AsyncIterator[str]:
    """A database of its own: rows other tests left in the outbox must not reach this sink."""
    async with own_database(env_settings) as url:
        yield url
