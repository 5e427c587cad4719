"""RSVPs: a first answer, a change, the same answer again; one outbox message per change."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from shared.schemas import RsvpCreated, RsvpUpdated
from tests.integration.api.rsvps.support import (
    cancel,
    counts,
    messages_about_event,
    messages_about_rsvp,
)
from tests.support.api import post_rsvp

pytestmark = pytest.mark.integration


async def test_a_first_answer_is_created_with_201_and_pending_notifications(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    response = await post_rsvp(client, event, alice, "going", guests=2)

    assert response.status_code == 201, response.text
    rsvp = response.json()
    assert rsvp["event_id"] == event["id"]
    assert rsvp["user_id"] == alice["id"]
    assert (rsvp["status"], rsvp["guests"], rsvp["version"]) == ("going", 2, 1)
    assert rsvp["notifications"] == {"email": "pending", "push": "pending"}


async def test_a_changed_answer_is_saved_with_200_and_the_next_version(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    first = await post_rsvp(client, event, alice, "going")

    changed = await post_rsvp(client, event, alice, "maybe")

    assert changed.status_code == 200, changed.text
    assert changed.json()["id"] == first.json()["id"]
    assert (changed.json()["status"], changed.json()["version"]) == ("maybe", 2)
    assert await counts(client, event) == {
        "going": 0,
        "maybe": 1,
        "declined": 0,
        "seats_taken": 0,
        "seats_left": 50,
    }


async def test_the_same_answer_again_is_200_and_publishes_nothing(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    first = await post_rsvp(client, event, alice, "going", guests=1)

    again = await post_rsvp(client, event, alice, "going", guests=1)

    assert again.status_code == 200, again.text
    assert again.json()["version"] == 1
    assert again.json()["updated_at"] == first.json()["updated_at"]
    assert len(await messages_about_rsvp(database, first.json()["id"])) == 1
    assert (await counts(client, event))["seats_taken"] == 2


async def test_a_first_answer_writes_one_rsvp_created_message(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    response = await post_rsvp(client, event, alice, "going", guests=1)

    [message] = await messages_about_rsvp(database, response.json()["id"])
    assert isinstance(message, RsvpCreated)
    assert message.producer == "calendar_service"
    data = message.data
    assert (data.status, data.previous_status, data.guests, data.version) == ("going", None, 1, 1)
    assert str(data.attendee.user_id) == alice["id"]
    assert data.attendee.email == alice["email"]
    assert data.attendee.name == "Alice Attendee"
    assert str(data.event.event_id) == event["id"]
    assert data.event.title == event["title"]
    assert data.event.location == "Main hall"
    assert data.event.organizer_name == "Olga Organizer"


async def test_a_change_writes_one_rsvp_updated_message_with_the_next_version(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going")).json()

    await post_rsvp(client, event, alice, "declined")

    created, updated = await messages_about_rsvp(database, rsvp["id"])
    assert isinstance(updated, RsvpUpdated)
    assert (updated.data.status, updated.data.previous_status) == ("declined", "going")
    assert updated.data.version == created.data.version + 1
    assert updated.message_id != created.message_id


async def test_a_change_of_guests_alone_is_an_update_that_moves_the_seats(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going", guests=0)).json()

    response = await post_rsvp(client, event, alice, "going", guests=3)

    assert response.status_code == 200, response.text
    assert (await counts(client, event))["seats_taken"] == 4
    messages = await messages_about_rsvp(database, rsvp["id"])
    assert [m.type for m in messages] == ["rsvp.created", "rsvp.updated"]
    assert messages[-1].data.guests == 3


async def test_each_change_writes_exactly_one_message_and_versions_increase(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    rsvp = (await post_rsvp(client, event, alice, "going")).json()
    await post_rsvp(client, event, alice, "maybe")
    await post_rsvp(client, event, alice, "maybe")  # no change: no message
    await post_rsvp(client, event, alice, "going", guests=2)
    await cancel(client, event, alice)
    await post_rsvp(client, event, alice, "declined")

    messages = await messages_about_rsvp(database, rsvp["id"])

    assert [m.type for m in messages] == [
        "rsvp.created",
        "rsvp.updated",
        "rsvp.updated",
        "rsvp.cancelled",
        "rsvp.created",
    ]
    assert [m.data.version for m in messages] == [1, 2, 3, 4, 5]
    assert [m.data.previous_status for m in messages] == [
        None,
        "going",
        "maybe",
        "going",
        "cancelled",
    ]
    assert len({m.message_id for m in messages}) == len(messages)


async def test_the_request_correlation_id_is_carried_by_the_message(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    correlation_id = uuid.uuid4()

    response = await client.post(
        f"/events/{event['id']}/rsvps",
        json={"status": "going"},
        headers={**alice["headers"], "X-Correlation-ID": str(correlation_id)},
    )

    assert response.headers["x-correlation-id"] == str(correlation_id)
    [message] = await messages_about_rsvp(database, response.json()["id"])
    assert message.correlation_id == correlation_id


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"status": "yes"}, ["body", "status"]),
        ({"status": "cancelled"}, ["body", "status"]),
        ({"status": "GOING"}, ["body", "status"]),
        ({"status": None}, ["body", "status"]),
        ({"guests": 1}, ["body", "status"]),
        ({"status": "going", "guests": -1}, ["body", "guests"]),
        ({"status": "going", "guests": 21}, ["body", "guests"]),
        ({"status": "going", "guests": 1.5}, ["body", "guests"]),
        ({"status": "going", "guests": "two"}, ["body", "guests"]),
        ({"status": "going", "guests": None}, ["body", "guests"]),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, dict) else "",
)
async def test_an_invalid_answer_is_a_422_naming_the_field_and_saves_nothing(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
    body: dict[str, Any],
    loc: list[str],
) -> None:
    response = await client.post(
        f"/events/{event['id']}/rsvps", json=body, headers=alice["headers"]
    )

    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert await messages_about_event(database, event["id"]) == []


async def test_answering_an_unknown_event_is_a_404(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await post_rsvp(client, {"id": str(uuid.uuid4())}, alice)

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "event not found"}


async def test_answering_an_event_id_that_is_not_a_uuid_is_a_422(
    client: httpx.AsyncClient, alice: dict[str, Any]
) -> None:
    response = await post_rsvp(client, {"id": "launch-party"}, alice)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "event_id"]


async def test_answering_without_a_token_is_a_401(
    client: httpx.AsyncClient, event: dict[str, Any]
) -> None:
    response = await client.post(f"/events/{event['id']}/rsvps", json={"status": "going"})

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
