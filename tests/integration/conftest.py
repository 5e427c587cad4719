"""Fixtures for integration tests of the calendar service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from tests.support.api import SUITE_LIMITS, api_client
from tests.support.services import BrokerEnv


@pytest.fixture(scope="session")
def calendar_settings(database_url: str, broker: BrokerEnv) -> Settings:
    return Settings(
        app_env="test",
        database_url=database_url,
        amqp_url=broker.amqp_url("calendar"),
        admin_amqp_url=broker.amqp_url("dlq-admin"),
        admin_emails=frozenset({"admin@example.com"}),
        db_pool_size=5,
        **SUITE_LIMITS,
    )


@pytest.fixture(scope="session")
async def client(calendar_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(calendar_settings) as client:
        yield client


@pytest.fixture(scope="module")
async def database(calendar_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the run's database, to look at what the API wrote."""
    connection = await asyncpg.connect(calendar_settings.asyncpg_dsn)
    yield connection
    await connection.close()
