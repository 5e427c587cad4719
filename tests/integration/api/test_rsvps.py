"""RSVPs: answering, changing, cancelling; capacity; Idempotency-Key; who may read what.

Every accepted change must leave exactly one message in the outbox, committed
with it (design §6.1); the tests read the outbox table of the run's database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from shared.schemas import Envelope, RsvpCancelled, RsvpCreated, RsvpUpdated, parse_message
from tests.support.api import (
    admin,
    api_client_answering_errors,
    create_event,
    handmade_cursor,
    post_rsvp,
    register,
    register_with_issued_token,
)

pytestmark = pytest.mark.integration

CROWD_SIZE = 10


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
async def organizer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Olga Organizer")


@pytest.fixture(scope="module")
async def alice(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Alice Attendee")


@pytest.fixture(scope="module")
async def crowd(client: httpx.AsyncClient, calendar_settings: Settings) -> list[dict[str, Any]]:
    """Other users; each test answers a fresh event, so they never see each other's RSVPs."""
    return [
        await register_with_issued_token(client, calendar_settings, name=f"Guest {n}")
        for n in range(CROWD_SIZE)
    ]


@pytest.fixture(scope="module")
async def lenient_client(calendar_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same API, answering an unhandled error with the 500 a real server would send."""
    async with api_client_answering_errors(calendar_settings) as client:
        yield client


@pytest.fixture
async def event(client: httpx.AsyncClient, organizer: dict[str, Any]) -> dict[str, Any]:
    return await create_event(client, organizer, capacity=50, location="Main hall")


_OUTBOX = "SELECT message_id, message_type, exchange, body FROM outbox WHERE {} = $1 ORDER BY id"
_BY_RSVP = _OUTBOX.format("convert_from(body, 'UTF8')::jsonb->'data'->>'rsvp_id'")
_BY_EVENT = _OUTBOX.format("convert_from(body, 'UTF8')::jsonb->'data'->'event'->>'event_id'")


async def _outbox(database: asyncpg.Connection, query: str, value: str) -> list[Envelope[Any]]:
    rows = await database.fetch(query, value)
    messages = [parse_message(row["body"]) for row in rows]
    for row, message in zip(rows, messages, strict=True):
        # the columns the relay routes by agree with the envelope they carry
        assert row["message_id"] == message.message_id
        assert row["message_type"] == message.type
        assert row["exchange"] == "rsvp.events"
    return messages


async def messages_about_rsvp(database: asyncpg.Connection, rsvp_id: str) -> list[Envelope[Any]]:
    """The outbox messages whose payload names this RSVP, oldest first."""
    return await _outbox(database, _BY_RSVP, rsvp_id)


async def messages_about_event(database: asyncpg.Connection, event_id: str) -> list[Envelope[Any]]:
    """The outbox messages whose payload names this event, oldest first."""
    return await _outbox(database, _BY_EVENT, event_id)


async def counts(client: httpx.AsyncClient, event: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/events/{event['id']}")
    assert response.status_code == 200, response.text
    rsvp_counts: dict[str, Any] = response.json()["rsvp_counts"]
    return rsvp_counts


async def cancel(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any]
) -> httpx.Response:
    return await client.delete(f"/events/{event['id']}/rsvps/me", headers=user["headers"])


# --- answering and changing -------------------------------------------------------------------


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


# --- capacity -------------------------------------------------------------------------------


@pytest.fixture
async def small_event(client: httpx.AsyncClient, organizer: dict[str, Any]) -> dict[str, Any]:
    return await create_event(client, organizer, capacity=2)


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


# --- Idempotency-Key ------------------------------------------------------------------------


async def test_a_repeated_idempotency_key_replays_the_first_response(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    key = str(uuid.uuid4())
    first = await post_rsvp(client, event, alice, "going", guests=1, idempotency_key=key)

    again = await post_rsvp(client, event, alice, "going", guests=1, idempotency_key=key)

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def test_a_repeated_idempotency_key_writes_nothing_new(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    key = str(uuid.uuid4())
    first = await post_rsvp(client, event, alice, "going", idempotency_key=key)

    await post_rsvp(client, event, alice, "going", idempotency_key=key)

    assert len(await messages_about_rsvp(database, first.json()["id"])) == 1
    assert (await counts(client, event))["going"] == 1


async def test_a_replay_answers_what_was_answered_then_even_after_a_later_change(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    key = str(uuid.uuid4())
    first = await post_rsvp(client, event, alice, "going", idempotency_key=key)
    await post_rsvp(client, event, alice, "declined")

    again = await post_rsvp(client, event, alice, "going", idempotency_key=key)

    assert again.content == first.content
    assert (await counts(client, event))["declined"] == 1


async def test_an_idempotency_key_reused_with_a_different_body_is_a_422(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    key = str(uuid.uuid4())
    await post_rsvp(client, event, alice, "going", idempotency_key=key)

    response = await post_rsvp(client, event, alice, "maybe", idempotency_key=key)

    assert response.status_code == 422, response.text
    assert "Idempotency-Key" in response.json()["detail"]
    assert (await counts(client, event))["going"] == 1


async def test_an_idempotency_key_reused_for_another_event_is_a_422(
    client: httpx.AsyncClient,
    organizer: dict[str, Any],
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    other = await create_event(client, organizer)
    key = str(uuid.uuid4())
    await post_rsvp(client, event, alice, "going", idempotency_key=key)

    response = await post_rsvp(client, other, alice, "going", idempotency_key=key)

    assert response.status_code == 422, response.text
    assert (await counts(client, other))["going"] == 0


async def test_an_idempotency_key_belongs_to_the_user_who_sent_it(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    key = str(uuid.uuid4())
    await post_rsvp(client, event, alice, "going", idempotency_key=key)

    response = await post_rsvp(client, event, crowd[0], "going", idempotency_key=key)

    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert response.json()["user_id"] == crowd[0]["id"]


async def test_the_same_idempotency_key_sent_twice_at_once_writes_once(
    client: httpx.AsyncClient,
    database: asyncpg.Connection,
    event: dict[str, Any],
    alice: dict[str, Any],
) -> None:
    key = str(uuid.uuid4())

    one, two = await asyncio.gather(
        post_rsvp(client, event, alice, "going", guests=1, idempotency_key=key),
        post_rsvp(client, event, alice, "going", guests=1, idempotency_key=key),
    )

    assert one.status_code == two.status_code == 201, (one.text, two.text)
    assert one.content == two.content
    replayed = [r.headers.get("idempotent-replayed") for r in (one, two)]
    assert set(replayed) == {"true", None}, "exactly one of the two is a replay"
    assert len(await messages_about_rsvp(database, one.json()["id"])) == 1
    assert (await counts(client, event))["seats_taken"] == 2


async def test_a_refused_request_does_not_use_up_its_idempotency_key(
    client: httpx.AsyncClient,
    small_event: dict[str, Any],
    alice: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    key = str(uuid.uuid4())
    await post_rsvp(client, small_event, alice, "going", guests=1)
    refused = await post_rsvp(client, small_event, crowd[0], "going", idempotency_key=key)
    assert refused.status_code == 409, refused.text
    await cancel(client, small_event, alice)

    retried = await post_rsvp(client, small_event, crowd[0], "going", idempotency_key=key)

    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers


async def test_an_idempotency_key_over_200_characters_is_a_422(
    client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any]
) -> None:
    response = await post_rsvp(client, event, alice, "going", idempotency_key="k" * 201)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


# --- cancelling -----------------------------------------------------------------------------


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


# --- reading one RSVP -----------------------------------------------------------------------


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


# --- listing an event's RSVPs ---------------------------------------------------------------


@pytest.fixture
async def answered_event(
    client: httpx.AsyncClient, organizer: dict[str, Any], crowd: list[dict[str, Any]]
) -> dict[str, Any]:
    """Five answers in a known order: going, maybe, going, declined, going (then cancelled)."""
    event = await create_event(client, organizer)
    for user, status in zip(crowd, ["going", "maybe", "going", "declined", "going"], strict=False):
        response = await post_rsvp(client, event, user, status)
        assert response.status_code == 201, response.text
    assert (await cancel(client, event, crowd[4])).status_code == 200
    return event


async def _walk_rsvps(
    client: httpx.AsyncClient, event: dict[str, Any], user: dict[str, Any], **params: Any
) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/events/{event['id']}/rsvps", params=query, headers=user["headers"]
        )
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


async def test_the_organizer_pages_through_every_rsvp_once_in_answer_order(
    client: httpx.AsyncClient,
    organizer: dict[str, Any],
    answered_event: dict[str, Any],
    crowd: list[dict[str, Any]],
) -> None:
    pages = await _walk_rsvps(client, answered_event, organizer, limit=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    items = [item for page in pages for item in page]
    assert [item["user_id"] for item in items] == [user["id"] for user in crowd[:5]]
    assert [item["user_name"] for item in items] == [f"Guest {n}" for n in range(5)]
    keys = [(datetime.fromisoformat(i["created_at"]), uuid.UUID(i["id"])) for i in items]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("status", "guests"),
    [("going", [0, 2]), ("maybe", [1]), ("declined", [3]), ("cancelled", [4])],
)
async def test_the_status_filter_lists_only_rsvps_with_that_status(
    client: httpx.AsyncClient,
    organizer: dict[str, Any],
    answered_event: dict[str, Any],
    crowd: list[dict[str, Any]],
    status: str,
    guests: list[int],
) -> None:
    pages = await _walk_rsvps(client, answered_event, organizer, status=status, limit=1)

    items = [item for page in pages for item in page]
    assert [item["user_id"] for item in items] == [crowd[n]["id"] for n in guests]
    assert {item["status"] for item in items} == {status}


async def test_only_the_organizer_may_list_an_events_rsvps(
    client: httpx.AsyncClient, answered_event: dict[str, Any], crowd: list[dict[str, Any]]
) -> None:
    response = await client.get(
        f"/events/{answered_event['id']}/rsvps", headers=crowd[0]["headers"]
    )

    assert response.status_code == 403, response.text
    assert isinstance(response.json()["detail"], str)


async def test_an_admin_may_list_any_events_rsvps(
    client: httpx.AsyncClient, answered_event: dict[str, Any]
) -> None:
    operator = await admin(client)

    response = await client.get(
        f"/events/{answered_event['id']}/rsvps", headers=operator["headers"]
    )

    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 5


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"status": "attending"}, ["query", "status"]),
        ({"status": ""}, ["query", "status"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 201}, ["query", "limit"]),
    ],
    ids=["unknown-status", "empty-status", "limit-0", "limit-201"],
)
async def test_a_bad_list_query_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient,
    organizer: dict[str, Any],
    event: dict[str, Any],
    params: dict[str, Any],
    loc: list[str],
) -> None:
    response = await client.get(
        f"/events/{event['id']}/rsvps", params=params, headers=organizer["headers"]
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


async def test_a_bad_list_cursor_is_a_400(
    client: httpx.AsyncClient, organizer: dict[str, Any], event: dict[str, Any]
) -> None:
    response = await client.get(
        f"/events/{event['id']}/rsvps", params={"cursor": "bogus"}, headers=organizer["headers"]
    )

    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "invalid cursor"}


async def test_listing_the_rsvps_of_an_unknown_event_is_a_404(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await client.get(f"/events/{uuid.uuid4()}/rsvps", headers=organizer["headers"])

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "event not found"}


# --- never a 500 ----------------------------------------------------------------------------

GARBAGE_BODIES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"going"', id="string"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b"\xff\xfe\xfd", id="not-utf8"),
    pytest.param(b"{" * 5000, id="deeply-nested"),
    pytest.param(b'{"status": {"$in": ["going"]}}', id="object-for-status"),
    pytest.param(b'{"status": "going", "guests": 1e400}', id="infinite-guests"),
    pytest.param(b'{"status": "going", "guests": 99999999999999999999999}', id="huge-guests"),
    pytest.param(b'{"status": "going\\u0000"}', id="nul-in-status"),
    pytest.param(b'{"status": "\\ud800"}', id="lone-surrogate"),
]


@pytest.mark.parametrize("content", GARBAGE_BODIES)
async def test_garbage_posted_as_an_rsvp_is_a_4xx_with_a_detail(
    lenient_client: httpx.AsyncClient, event: dict[str, Any], alice: dict[str, Any], content: bytes
) -> None:
    response = await lenient_client.post(
        f"/events/{event['id']}/rsvps",
        content=content,
        headers={**alice["headers"], "content-type": "application/json"},
    )

    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/events/%00/rsvps"),
        ("POST", "/events/{event_id}/rsvps/me"),
        ("GET", "/events/{event_id}/rsvps?status=%00"),
        ("GET", "/events/{event_id}/rsvps?limit=1e9"),
        ("GET", "/events/{event_id}/rsvps?cursor=" + "%FF" * 50),
        ("GET", "/events/{event_id}/rsvps?cursor=" + handmade_cursor("2031-01-01T00:00Z", 7)),
        ("GET", "/events/not-a-uuid/rsvps"),
        ("DELETE", "/events/not-a-uuid/rsvps/me"),
        ("DELETE", "/events/{event_id}/rsvps/someone-else"),
        ("GET", "/rsvps/%00"),
        ("GET", "/rsvps/" + "f" * 5000),
        ("PUT", "/rsvps/{event_id}"),
        ("PATCH", "/events/{event_id}/rsvps"),
    ],
    ids=lambda value: value[:40],
)
async def test_garbage_in_an_rsvp_url_is_a_4xx_with_a_detail(
    lenient_client: httpx.AsyncClient,
    organizer: dict[str, Any],
    event: dict[str, Any],
    method: str,
    path: str,
) -> None:
    response = await lenient_client.request(
        method,
        path.format(event_id=event["id"]),
        json={"status": "going"},
        headers=organizer["headers"],
    )

    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param(" ", id="blank"),
        pytest.param("é".encode("latin-1"), id="latin-1-byte"),
        pytest.param("k" * 200, id="200-characters"),
    ],
)
async def test_an_odd_idempotency_key_is_honoured_or_refused_never_a_500(
    lenient_client: httpx.AsyncClient,
    event: dict[str, Any],
    crowd: list[dict[str, Any]],
    key: str | bytes,
) -> None:
    headers = {**crowd[0]["headers"], "Idempotency-Key": key}

    first = await lenient_client.post(
        f"/events/{event['id']}/rsvps", json={"status": "maybe"}, headers=headers
    )
    again = await lenient_client.post(
        f"/events/{event['id']}/rsvps", json={"status": "maybe"}, headers=headers
    )

    assert first.status_code < 500, first.text
    assert again.status_code == first.status_code
    assert again.content == first.content
