"""Cancelling an RSVP: 200 with status cancelled, one rsvp.cancelled message, seats freed."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from shared.schemas import RsvpCancelled, RsvpCreated
from tests.integration.api.rsvps.support import (
    cancel,
    counts,
    messages_about_rsvp,
)
from tests.support.api import post_rsvp

pytestmark = pytest.mark.integration


async def test_cancelling_answers_200_with_status_cancelled(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going", guests=2)).json()

    response = await cancel(client, event, alice)

    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["id"], cancelled["status"], cancelled["version"]) == (
        rsvp["id"],
        "cancelled",
        2,
    )
    assert cancelled["notifications"] == {"email": "pending", "push": "pending"}
    assert (await counts(client, event))["seats_taken"] == 0


async def test_cancelling_writes_one_rsvp_cancelled_message(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "maybe")).json()

    await cancel(client, event, alice)

    messages = await messages_about_rsvp(database, rsvp["id"])
    assert [m.type for m in messages] == ["rsvp.created", "rsvp.cancelled"]
    cancelled = messages[-1]
    assert isinstance(cancelled, RsvpCancelled)
    assert (cancelled.data.status, cancelled.data.previous_status) == ("cancelled", "maybe")
    assert cancelled.data.version == 2


async def test_cancelling_twice_is_a_404_and_publishes_nothing_more(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going")).json()
    await cancel(client, event, alice)

    again = await cancel(client, event, alice)

    assert again.status_code == 404, again.text
    assert again.json() == {"detail": "you have no active RSVP for this event"}
    assert len(await messages_about_rsvp(database, rsvp["id"])) == 2


async def test_cancelling_without_an_rsvp_is_a_404(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    response = await cancel(client, event, alice)

    assert response.status_code == 404, response.text
    assert isinstance(response.json()["detail"], str)


async def test_cancelling_on_an_unknown_event_is_a_404(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await cancel(client, {"id": str(uuid.uuid4())}, alice)

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "event not found"}


async def test_answering_again_after_cancelling_is_a_new_rsvp(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going")).json()
    await cancel(client, event, alice)

    response = await post_rsvp(client, event, alice, "going")

    assert response.status_code == 201, response.text
    assert (response.json()["status"], response.json()["version"]) == ("going", 3)
    last = (await messages_about_rsvp(database, rsvp["id"]))[-1]
    assert isinstance(last, RsvpCreated)
    assert last.data.previous_status == "cancelled"
    assert (await counts(client, event))["going"] == 1
