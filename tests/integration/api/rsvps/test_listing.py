"""Listing an event's RSVPs: keyset pages in answer order, the status filter, who may list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.api.rsvps.support import (
    cancel,
)
from tests.support.api import admin, create_event, post_rsvp

pytestmark = pytest.mark.integration


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
