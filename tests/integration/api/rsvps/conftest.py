"""Fixtures of the RSVP tests: an organizer, Alice, a crowd, and fresh events to answer.

The users are registered once for the whole folder (package scope, as they
were once per module when it was one file); every test answers a fresh event,
so no test sees another's RSVPs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from calendar_service.config import Settings
from tests.integration.api.rsvps.support import CROWD_SIZE
from tests.support.api import (
    api_client_answering_errors,
    create_event,
    register,
    register_with_issued_token,
)


@pytest.fixture(scope="package")
async def organizer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Olga Organizer")


@pytest.fixture(scope="package")
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Alice Attendee")


@pytest.fixture(scope="package")
async def crowd(client: httpx.AsyncClient, calendar_settings: Settings) -> list[dict[str, Any]]:
    """Other users; each test answers a fresh event, so they never see each other's RSVPs."""
    return [
        await register_with_issued_token(client, calendar_settings, name=f"Guest {n}")
        for n in range(CROWD_SIZE)
    ]


@pytest.fixture(scope="package")
async def lenient_client(calendar_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same API, answering an unhandled error with the 500 a real server would send."""
    async with api_client_answering_errors(calendar_settings) as client:
        yield client


@pytest.fixture
async def event(client: httpx.AsyncClient, organizer: dict[str, Any]) -> dict[str, Any]:
    return await create_event(client, organizer, capacity=50, location="Main hall")


@pytest.fixture
async def small_event(client: httpx.AsyncClient, organizer: dict[str, Any]) -> dict[str, Any]:
    return await create_event(client, organizer, capacity=2)
