"""Reading one RSVP with its notification status: the owner, the organizer, nobody else."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.api import post_rsvp

pytestmark = pytest.mark.integration


async def test_the_owner_reads_an_rsvp_with_its_notification_status(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going", guests=1)).json()

    response = await client.get(f"/rsvps/{rsvp['id']}", headers=alice["headers"])

    assert response.status_code == 200, response.text
    read = response.json()
    assert (read["id"], read["status"], read["guests"]) == (rsvp["id"], "going", 1)
    assert read["notifications"] == {"email": "pending", "push": "pending"}


async def test_the_organizer_reads_an_rsvp_to_their_event(
    client: httpx.AsyncClient,
    organizer: dict[str, Any],
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "maybe")).json()

    response = await client.get(f"/rsvps/{rsvp['id']}", headers=organizer["headers"])

    assert response.status_code == 200, response.text
    assert response.json()["user_id"] == alice["id"]


async def test_a_stranger_may_not_read_someone_elses_rsvp(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going")).json()

    response = await client.get(f"/rsvps/{rsvp['id']}", headers=crowd[0]["headers"])

    assert response.status_code == 403, response.text
    assert isinstance(response.json()["detail"], str)


async def test_reading_an_unknown_rsvp_is_a_404(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await client.get(f"/rsvps/{uuid.uuid4()}", headers=alice["headers"])

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "RSVP not found"}


async def test_reading_an_rsvp_id_that_is_not_a_uuid_is_a_422(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await client.get("/rsvps/me", headers=alice["headers"])

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "rsvp_id"]


async def test_reading_an_rsvp_without_a_token_is_a_401(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going")).json()

    response = await client.get(f"/rsvps/{rsvp['id']}")

    assert response.status_code == 401, response.text
