"""Readiness means "this replica cannot serve" (issue 14 item 4): a Redis that is away
degrades the API (reported in the body and a gauge) but leaves it ready."""

from __future__ import annotations

import pytest

from calendar_service.config import Settings
from tests.support.api import api_client

pytestmark = pytest.mark.integration


async def test_readyz_is_ready_with_nothing_degraded_when_all_answer(
    calendar_settings: Settings,
) -> None:
    async with api_client(calendar_settings) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["ready"]) == ("ready", True)
    assert "redis" not in body["degraded"]  # the broker may be away here: it only degrades
    assert set(body["checks"]) == {"database", "broker", "redis"}


async def test_with_redis_away_the_api_stays_ready_and_reports_redis_degraded(
    calendar_settings: Settings,
) -> None:
    nobody_listens = calendar_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with api_client(nobody_listens) as client:
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
        events = await client.get("/events")

    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert "redis" in ready.json()["degraded"]
    assert ready.json()["checks"]["redis"].startswith("failed")
    assert 'dependency_up{dependency="redis"} 0.0' in metrics
    assert 'dependency_up{dependency="database"} 1.0' in metrics
    assert events.status_code == 200  # reads are served meanwhile
