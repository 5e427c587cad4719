"""``METRICS_PUBLIC=false`` keeps ``/metrics`` off the public port (issue 14, item 5)."""

from __future__ import annotations

import httpx
import pytest

from calendar_service.config import Settings
from tests.support.api import api_client
from tests.support.ports import free_port

pytestmark = pytest.mark.integration


async def test_private_metrics_are_served_only_on_their_own_port(
    calendar_settings: Settings,
) -> None:
    port = free_port()
    settings = calendar_settings.model_copy(update={"metrics_public": False, "metrics_port": port})

    async with api_client(settings) as client:
        await client.get("/healthz")
        public = await client.get("/metrics")
        async with httpx.AsyncClient() as plain:
            private = await plain.get(f"http://127.0.0.1:{port}/metrics")

    assert public.status_code == 404
    assert private.status_code == 200
    assert "http_requests_total" in private.text


async def test_metrics_are_public_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert "http_requests_total" in response.text
