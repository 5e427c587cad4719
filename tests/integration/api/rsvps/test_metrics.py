"""An answer is counted and timed in `/metrics` by method, route template and status."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.support.api import post_rsvp

pytestmark = pytest.mark.integration

ROUTE = 'method="POST",route="/events/{event_id}/rsvps"'


def _sample(metrics: str, name: str, labels: str) -> float:
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", metrics, re.MULTILINE)
    return float(found[1]) if found else 0.0


async def test_an_answer_adds_one_to_its_count_and_its_duration_histogram(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    before = (await client.get("/metrics")).text

    response = await post_rsvp(client, event, alice, "going")

    assert response.status_code == 201, response.text
    after = (await client.get("/metrics")).text
    created = f'{ROUTE},status="201"'
    assert _sample(after, "http_requests_total", created) == (
        _sample(before, "http_requests_total", created) + 1
    )
    assert _sample(after, "http_request_duration_seconds_count", ROUTE) == (
        _sample(before, "http_request_duration_seconds_count", ROUTE) + 1
    )
