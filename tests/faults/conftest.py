"""One running system for the module's fault tests: its processes start once (~10-20 s)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devtools.env import EnvSettings
from tests.faults.load import Audience, gather_audience
from tests.faults.system import RunningSystem, running_system

#: Attendees, each with a push subscription: RSVPs go to (event, attendee) pairs.
AUDIENCE = 10


@pytest.fixture(scope="module")
async def system(env_settings: EnvSettings) -> AsyncIterator[RunningSystem]:
    async with running_system(env_settings) as system:
        yield system


@pytest.fixture(scope="module")
async def audience(system: RunningSystem) -> Audience:
    async with httpx.AsyncClient(base_url=system.api, timeout=30.0) as client:
        return await gather_audience(client, system, AUDIENCE)
