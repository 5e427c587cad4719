"""Fixtures of the outbox relay's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from devtools.env import EnvSettings
from tests.support.services import own_database


@pytest.fixture
async def relay_db(env_settings: EnvSettings) -> AsyncIterator[str]:
    """A database of this test's own, so no other test's outbox rows get in the way."""
    async with own_database(env_settings) as url:
        yield url
