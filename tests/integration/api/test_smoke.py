"""A first pass through the API: register, create an event, RSVP, read it back."""

from __future__ import annotations

import httpx
import pytest

from tests.support.api import create_event, register

pytestmark = pytest.mark.integration


async def test_rsvp_round_trip(client: httpx.AsyncClient) -> None:
    organizer = await register(client)
    guest = await register(client)
    event = await create_event(client, organizer, capacity=10)

    response = await client.post(
        f"/events/{event['id']}/rsvps",
        json={"status": "going", "guests": 1},
        headers=guest["headers"],
    )

    assert response.status_code == 201, response.text
    rsvp = response.json()
    assert rsvp["notifications"] == {"email": "pending", "push": "pending"}
    detail = (await client.get(f"/events/{event['id']}")).json()
    assert detail["rsvp_counts"]["going"] == 1
    assert detail["rsvp_counts"]["seats_taken"] == 2
    read = await client.get(f"/rsvps/{rsvp['id']}", headers=guest["headers"])
    assert read.status_code == 200
    assert read.json()["status"] == "going"
