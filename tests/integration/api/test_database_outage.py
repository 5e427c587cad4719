"""The API with PostgreSQL away answers 503 with Retry-After, never 500 (design §8).

The API reaches PostgreSQL through a loopback TCP proxy: cutting it drops
every pooled connection and refuses new ones, as a stopped or restarting
server looks; terminating the backends is what an operator's
``pg_terminate_backend`` (or a failover) does to the pool's connections.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from tests.support.api import api_client_answering_errors, create_event, post_rsvp
from tests.support.api import register_with_issued_token as register
from tests.support.proxy import CuttableProxy, proxied

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(calendar_settings: Settings) -> AsyncIterator[tuple[CuttableProxy, str]]:
    async with proxied(calendar_settings.database_url) as proxy_and_url:
        yield proxy_and_url


@pytest.fixture
async def client(
    calendar_settings: Settings, database: tuple[CuttableProxy, str]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = calendar_settings.model_copy(update={"database_url": database[1]})
    async with api_client_answering_errors(settings) as client:
        yield client


async def _answers(
    client: httpx.AsyncClient, organizer: dict[str, Any], attendees: list[dict[str, Any]]
) -> list[httpx.Response]:
    event = await create_event(client, organizer, capacity=100)
    return [await post_rsvp(client, event, attendee) for attendee in attendees]


async def test_with_postgres_away_writes_and_reads_answer_503_with_retry_after(
    client: httpx.AsyncClient, calendar_settings: Settings, database: tuple[CuttableProxy, str]
) -> None:
    proxy = database[0]
    organizer = await register(client, calendar_settings)
    attendee = await register(client, calendar_settings)
    event = await create_event(client, organizer)

    await proxy.cut()
    answers = [
        await post_rsvp(client, event, attendee),
        await client.get(f"/events/{event['id']}/rsvps", headers=organizer["headers"]),
        await client.post("/events", json={"title": "x"}, headers=organizer["headers"]),
    ]
    await proxy.start()
    back = await post_rsvp(client, event, attendee)

    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json() == {"detail": "the database is unavailable, try again shortly"}
    assert back.status_code == 201, back.text


async def test_backends_terminated_under_the_pool_answer_503_never_500(
    client: httpx.AsyncClient, calendar_settings: Settings, database: tuple[CuttableProxy, str]
) -> None:
    organizer = await register(client, calendar_settings)
    attendees = [await register(client, calendar_settings) for _ in range(3)]
    assert {r.status_code for r in await _answers(client, organizer, attendees)} == {201}

    dsn = calendar_settings.asyncpg_dsn
    connection = await asyncpg.connect(dsn)
    try:
        terminated = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    assert terminated >= 1

    statuses = [r.status_code for r in await _answers(client, organizer, attendees)]
    assert set(statuses) <= {201, 503}, statuses
    assert statuses[-1] == 201  # the pool replaced what was terminated
