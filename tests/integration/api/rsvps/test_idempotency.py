"""RSVPs with an Idempotency-Key: a repeat replays the first answer and writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.api.rsvps.support import (
    cancel,
    counts,
    messages_about_rsvp,
)
from tests.support.api import create_event, post_rsvp

pytestmark = pytest.mark.integration


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
