"""RSVPs and an event's capacity: seats taken by going and guests, 409 when full, races."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.api.rsvps.support import (
    CROWD_SIZE,
    cancel,
    counts,
    messages_about_event,
    messages_about_rsvp,
)
from tests.support.api import create_event, post_rsvp

pytestmark = pytest.mark.integration


async def test_going_with_a_guest_takes_two_seats(
    client: httpx.AsyncClient, small_event: dict[str, Any], alice: dict[str, Any]
) -> None:
    response = await post_rsvp(client, small_event, alice, "going", guests=1)

    assert response.status_code == 201, response.text
    assert await counts(client, small_event) == {
        "going": 1,
        "maybe": 0,
        "declined": 0,
        "seats_taken": 2,
        "seats_left": 0,
    }


async def test_going_to_a_full_event_is_a_409_and_saves_nothing(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    small_event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    await post_rsvp(client, small_event, alice, "going", guests=1)

    response = await post_rsvp(client, small_event, crowd[0], "going")

    assert response.status_code == 409, response.text
    assert response.json() == {"detail": "event is full"}
    assert (await counts(client, small_event))["seats_taken"] == 2
    listed = await client.get(f"/events/{small_event['id']}/rsvps", headers=organizer["headers"])
    assert [r["user_id"] for r in listed.json()["items"]] == [alice["id"]]
    assert len(await messages_about_event(database, small_event["id"])) == 1


async def test_maybe_is_accepted_when_the_event_is_full_because_it_takes_no_seat(
    client: httpx.AsyncClient,
    small_event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    await post_rsvp(client, small_event, alice, "going", guests=1)

    response = await post_rsvp(client, small_event, crowd[0], "maybe", guests=5)

    assert response.status_code == 201, response.text
    assert await counts(client, small_event) == {
        "going": 1,
        "maybe": 1,
        "declined": 0,
        "seats_taken": 2,
        "seats_left": 0,
    }


async def test_a_maybe_cannot_turn_into_going_when_the_event_is_full(
    client: httpx.AsyncClient,
    small_event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    await post_rsvp(client, small_event, alice, "going", guests=1)
    await post_rsvp(client, small_event, crowd[0], "maybe")

    response = await post_rsvp(client, small_event, crowd[0], "going")

    assert response.status_code == 409, response.text
    read = await client.get(f"/events/{small_event['id']}")
    assert (read.json()["rsvp_counts"]["maybe"], read.json()["rsvp_counts"]["going"]) == (1, 1)


async def test_adding_guests_beyond_the_seats_left_is_a_409_and_keeps_the_old_answer(
    client: httpx.AsyncClient, small_event: dict[str, Any], alice: dict[str, Any]
) -> None:
    rsvp = (await post_rsvp(client, small_event, alice, "going")).json()

    response = await post_rsvp(client, small_event, alice, "going", guests=2)

    assert response.status_code == 409, response.text
    read = await client.get(f"/rsvps/{rsvp['id']}", headers=alice["headers"])
    assert (read.json()["guests"], read.json()["version"]) == (0, 1)
    assert (await counts(client, small_event))["seats_taken"] == 1


async def test_cancelling_frees_the_seats_for_someone_else(
    client: httpx.AsyncClient,
    small_event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    await post_rsvp(client, small_event, alice, "going", guests=1)
    assert (await post_rsvp(client, small_event, crowd[0], "going")).status_code == 409

    await cancel(client, small_event, alice)
    response = await post_rsvp(client, small_event, crowd[0], "going", guests=1)

    assert response.status_code == 201, response.text
    assert (await counts(client, small_event))["seats_left"] == 0


async def test_users_racing_for_the_last_seats_never_overbook_the_event(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    organizer: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    event = await create_event(client, organizer, capacity=3)

    responses = await asyncio.gather(*(post_rsvp(client, event, user, "going") for user in crowd))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * (CROWD_SIZE - 3), [r.text for r in responses]
    assert await counts(client, event) == {
        "going": 3,
        "maybe": 0,
        "declined": 0,
        "seats_taken": 3,
        "seats_left": 0,
    }
    winners = {r.json()["id"] for r in responses if r.status_code == 201}
    messages = await messages_about_event(database, event["id"])
    assert {str(m.data.rsvp_id) for m in messages} == winners
    assert len(messages) == 3


async def test_the_same_answer_sent_twice_at_once_is_saved_and_published_once(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    one, two = await asyncio.gather(
        post_rsvp(client, event, alice, "going", guests=1),
        post_rsvp(client, event, alice, "going", guests=1),
    )

    assert sorted([one.status_code, two.status_code]) == [200, 201], (one.text, two.text)
    assert one.json()["id"] == two.json()["id"]
    assert len(await messages_about_rsvp(database, one.json()["id"])) == 1
    assert (await counts(client, event))["seats_taken"] == 2


async def test_two_different_answers_at_once_are_applied_one_after_the_other(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    going, maybe = await asyncio.gather(
        post_rsvp(client, event, alice, "going", guests=2),
        post_rsvp(client, event, alice, "maybe"),
    )

    assert sorted([going.status_code, maybe.status_code]) == [200, 201], (going.text, maybe.text)
    last = max((going, maybe), key=lambda r: r.json()["version"]).json()
    assert last["version"] == 2
    messages = await messages_about_rsvp(database, last["id"])
    assert [m.type for m in messages] == ["rsvp.created", "rsvp.updated"]
    assert messages[-1].data.status == last["status"]
    expected = {"going": (1, 0, 3), "maybe": (0, 1, 0)}[last["status"]]
    read = await counts(client, event)
    assert (read["going"], read["maybe"], read["seats_taken"]) == expected
