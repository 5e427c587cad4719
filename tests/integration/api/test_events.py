"""Events: creating one, listing them page by page, reading one with fresh RSVP counts."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from calendar_service.config import Settings
from tests.support.api import (
    api_client_answering_errors,
    create_event,
    handmade_cursor,
    post_rsvp,
    register,
    register_with_issued_token,
)

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 64 * 1024


def _event_body(**fields: Any) -> dict[str, Any]:
    starts = datetime.now(UTC) + timedelta(days=30)
    return {"title": "Board games night", "starts_at": starts.isoformat(), **fields}


@pytest.fixture(scope="module")
async def organizer(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client, name="Olga Organizer")


@pytest.fixture(scope="module")
async def attendee(client: httpx.AsyncClient, calendar_settings: Settings) -> dict[str, Any]:
    return await register_with_issued_token(client, calendar_settings)


@pytest.fixture(scope="module")
async def lenient_client(calendar_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same API, answering an unhandled error with the 500 a real server would send."""
    async with api_client_answering_errors(calendar_settings) as client:
        yield client


# --- create ---------------------------------------------------------------------------------


async def test_a_new_event_is_created_with_all_counts_at_zero(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    body = _event_body(
        starts_at="2031-03-14T19:00:00+01:00",
        ends_at="2031-03-14T23:00:00+01:00",
        location="Town hall",
        capacity=40,
    )

    response = await client.post("/events", json=body, headers=organizer["headers"])

    assert response.status_code == 201, response.text
    event = response.json()
    assert event["organizer_id"] == organizer["id"]
    assert event["title"] == "Board games night"
    assert datetime.fromisoformat(event["starts_at"]) == datetime(2031, 3, 14, 18, tzinfo=UTC)
    assert event["location"] == "Town hall"
    assert event["capacity"] == 40
    assert event["rsvp_counts"] == {
        "going": 0,
        "maybe": 0,
        "declined": 0,
        "seats_taken": 0,
        "seats_left": 40,
    }


async def test_an_event_without_capacity_has_no_seat_limit(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await client.post("/events", json=_event_body(), headers=organizer["headers"])

    assert response.status_code == 201, response.text
    assert response.json()["capacity"] is None
    assert response.json()["rsvp_counts"]["seats_left"] is None


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"starts_at": "2031-03-14T19:00:00"}, ["body", "starts_at"]),
        ({"ends_at": "2031-03-14T23:00:00"}, ["body", "ends_at"]),
        ({"starts_at": "next tuesday"}, ["body", "starts_at"]),
        ({"starts_at": "2031-02-30T19:00:00Z"}, ["body", "starts_at"]),
        (
            {"starts_at": "2031-03-14T19:00:00Z", "ends_at": "2031-03-14T18:59:59Z"},
            ["body"],
        ),
        ({"capacity": 0}, ["body", "capacity"]),
        ({"capacity": -5}, ["body", "capacity"]),
        ({"capacity": 1_000_001}, ["body", "capacity"]),
        ({"capacity": 2.5}, ["body", "capacity"]),
        ({"capacity": "lots"}, ["body", "capacity"]),
        ({"title": ""}, ["body", "title"]),
        ({"title": "x" * 201}, ["body", "title"]),
        ({"title": ["a", "list"]}, ["body", "title"]),
        ({"title": None}, ["body", "title"]),
        ({"location": "x" * 301}, ["body", "location"]),
        ({"starts_at": {"date": "2031-03-14"}}, ["body", "starts_at"]),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, dict) else "",
)
async def test_an_invalid_event_field_is_a_422_naming_that_field(
    client: httpx.AsyncClient, organizer: dict[str, Any], fields: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post(
        "/events", json=_event_body(**fields), headers=organizer["headers"]
    )

    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


async def test_an_event_missing_its_start_is_a_422(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await client.post(
        "/events", json={"title": "Whenever"}, headers=organizer["headers"]
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "starts_at"]
    assert response.json()["detail"][0]["type"] == "missing"


async def test_an_event_may_end_the_moment_it_starts(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    instant = "2031-03-14T19:00:00+00:00"

    response = await client.post(
        "/events",
        json=_event_body(starts_at=instant, ends_at=instant),
        headers=organizer["headers"],
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("field", ["title", "location"])
async def test_text_with_a_nul_character_is_a_422_not_a_server_error(
    lenient_client: httpx.AsyncClient, organizer: dict[str, Any], field: str
) -> None:
    # PostgreSQL text cannot hold U+0000: it must be refused before it reaches the database
    body = _event_body(**{field: "Launch\x00party"})

    response = await lenient_client.post("/events", json=body, headers=organizer["headers"])

    assert response.status_code == 422, response.text
    assert ["body", field] in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    "starts_at",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"],
    ids=["before-year-1-in-utc", "after-year-9999-in-utc"],
)
async def test_a_start_that_leaves_the_calendar_in_utc_is_a_422_not_a_server_error(
    lenient_client: httpx.AsyncClient, organizer: dict[str, Any], starts_at: str
) -> None:
    response = await lenient_client.post(
        "/events", json=_event_body(starts_at=starts_at), headers=organizer["headers"]
    )

    assert response.status_code == 422, response.text
    assert ["body", "starts_at"] in [error["loc"] for error in response.json()["detail"]]


async def test_a_body_that_is_not_json_is_a_400(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await client.post(
        "/events",
        content=b'{"title": "Half a body", "starts_at": ',
        headers={**organizer["headers"], "content-type": "application/json"},
    )

    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "request body is not valid JSON"}


async def test_a_json_value_that_is_not_an_object_is_a_422(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    response = await client.post(
        "/events", json=["title", "starts_at"], headers=organizer["headers"]
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body"]


async def test_a_body_declared_over_64_kib_is_refused_with_413(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    body = orjson.dumps(_event_body(location="x" * MAX_BODY_BYTES))

    response = await client.post(
        "/events",
        content=body,
        headers={**organizer["headers"], "content-type": "application/json"},
    )

    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "request body too large"}


async def test_a_streamed_body_over_64_kib_is_refused_with_413(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # no Content-Length: httpx sends this as a chunked body
        yield b'{"title": "Streaming", "starts_at": "2031-01-01T00:00:00Z", "location": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post(
        "/events",
        content=chunks(),
        headers={**organizer["headers"], "content-type": "application/json"},
    )

    assert response.status_code == 413, response.text
    assert response.json() == {"detail": "request body too large"}


async def test_a_streamed_body_under_64_kib_is_accepted(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "Streaming", '
        yield b'"starts_at": "2031-01-01T00:00:00Z"}'

    response = await client.post(
        "/events",
        content=chunks(),
        headers={**organizer["headers"], "content-type": "application/json"},
    )

    assert response.status_code == 201, response.text


# --- read one -------------------------------------------------------------------------------


async def test_an_unknown_event_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/events/{uuid.uuid4()}")

    assert response.status_code == 404, response.text
    assert response.json() == {"detail": "event not found"}


@pytest.mark.parametrize("event_id", ["42", "not-a-uuid", "00000000-0000-0000-0000-00000000000g"])
async def test_an_event_id_that_is_not_a_uuid_is_a_422(
    client: httpx.AsyncClient, event_id: str
) -> None:
    response = await client.get(f"/events/{event_id}")

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "event_id"]


async def test_an_event_read_twice_is_served_from_the_cache_the_second_time(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    event = await create_event(client, organizer, capacity=5)

    first = await client.get(f"/events/{event['id']}")
    second = await client.get(f"/events/{event['id']}")

    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "miss"
    assert second.headers["x-cache"] == "hit"
    assert second.json() == first.json()


async def test_an_rsvp_invalidates_the_cached_event_so_its_counts_are_fresh(
    client: httpx.AsyncClient, organizer: dict[str, Any], attendee: dict[str, Any]
) -> None:
    event = await create_event(client, organizer, capacity=5)
    await client.get(f"/events/{event['id']}")
    cached = await client.get(f"/events/{event['id']}")
    assert cached.headers["x-cache"] == "hit"

    answered = await post_rsvp(client, event, attendee, "going", guests=2)
    assert answered.status_code == 201, answered.text
    after = await client.get(f"/events/{event['id']}")

    assert after.headers["x-cache"] == "miss"
    assert after.json()["rsvp_counts"] == {
        "going": 1,
        "maybe": 0,
        "declined": 0,
        "seats_taken": 3,
        "seats_left": 2,
    }


async def test_a_cancellation_invalidates_the_cached_event_so_its_counts_are_fresh(
    client: httpx.AsyncClient, organizer: dict[str, Any], attendee: dict[str, Any]
) -> None:
    event = await create_event(client, organizer, capacity=5)
    assert (await post_rsvp(client, event, attendee, "going")).status_code == 201
    await client.get(f"/events/{event['id']}")
    assert (await client.get(f"/events/{event['id']}")).headers["x-cache"] == "hit"

    cancelled = await client.delete(f"/events/{event['id']}/rsvps/me", headers=attendee["headers"])
    assert cancelled.status_code == 200, cancelled.text
    after = await client.get(f"/events/{event['id']}")

    assert after.headers["x-cache"] == "miss"
    assert after.json()["rsvp_counts"]["going"] == 0
    assert after.json()["rsvp_counts"]["seats_left"] == 5


# --- list -----------------------------------------------------------------------------------


async def _walk_events(client: httpx.AsyncClient, limit: int) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "pagination does not end"


async def test_walking_every_page_lists_each_event_once_in_start_order(
    client: httpx.AsyncClient, organizer: dict[str, Any]
) -> None:
    # five events starting at the same instant, so pages must break ties by id
    same_start = datetime(2090, 1, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 10**6)
    ours = {
        (await create_event(client, organizer, starts_at=same_start.isoformat()))["id"]
        for _ in range(5)
    }
    ours.add((await create_event(client, organizer, starts_at="2089-06-01T00:00:00Z"))["id"])

    pages = await _walk_events(client, limit=2)

    listed = [event for page in pages for event in page]
    ids = [event["id"] for event in listed]
    assert all(1 <= len(page) <= 2 for page in pages[:-1])
    assert len(ids) == len(set(ids)), "an event was listed twice"
    assert ours <= set(ids)
    keys = [(datetime.fromisoformat(e["starts_at"]), uuid.UUID(e["id"])) for e in listed]
    assert keys == sorted(keys)


async def test_the_last_page_has_no_nexthandmade_cursor(client: httpx.AsyncClient) -> None:
    response = await client.get("/events", params={"limit": 100})

    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["next_cursor"] is None) == (len(page["items"]) < 100)


@pytest.mark.parametrize("limit", ["0", "-1", "101", "ten"])
async def test_a_page_size_out_of_range_is_a_422(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/events", params={"limit": limit})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "é",
        base64.urlsafe_b64encode(b"\xff\xfe garbage").decode(),
        handmade_cursor("yesterday", str(uuid.uuid4())),
        handmade_cursor("2031-01-01T00:00:00+00:00"),
        handmade_cursor("2031-01-01T00:00:00+00:00", "not-a-uuid"),
        handmade_cursor(None, None),
        base64.urlsafe_b64encode(b'{"at": 1}').decode(),
    ],
)
async def test_a_cursor_the_service_did_not_make_is_a_400(
    client: httpx.AsyncClient, cursor: str
) -> None:
    response = await client.get("/events", params={"cursor": cursor})

    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "invalid cursor"}


@pytest.mark.parametrize(
    "cursor",
    [
        handmade_cursor("2031-01-01T00:00:00+00:00", 5),
        handmade_cursor("2031-01-01T00:00:00+00:00", ["a"]),
        handmade_cursor("0001-01-01T00:00:00+05:00", str(uuid.uuid4())),
    ],
    ids=["id-is-a-number", "id-is-a-list", "time-before-year-1-in-utc"],
)
async def test_a_well_formed_cursor_with_impossible_values_is_a_400_not_a_server_error(
    lenient_client: httpx.AsyncClient, cursor: str
) -> None:
    response = await lenient_client.get("/events", params={"cursor": cursor})

    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "invalid cursor"}


# --- never a 500 ----------------------------------------------------------------------------

GARBAGE_BODIES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[]", id="array"),
    pytest.param(b"42", id="number"),
    pytest.param(b'"a string"', id="string"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b"\xff\xfe\xfd", id="not-utf8"),
    pytest.param(b"[" * 5000, id="deeply-nested"),
    pytest.param(b'{"title": {"$gt": ""}, "starts_at": []}', id="objects-for-strings"),
    pytest.param(b'{"title": "\\ud800", "starts_at": "2031-01-01T00:00:00Z"}', id="lone-surrogate"),
    pytest.param(
        b'{"title": "x", "starts_at": "2031-01-01T00:00:00Z", "capacity": 1e400}',
        id="infinite-capacity",
    ),
    pytest.param(
        b'{"title": "x", "starts_at": "2031-01-01T00:00:00Z", "capacity": 99999999999999999999}',
        id="huge-capacity",
    ),
    pytest.param(b'{"title": "x", "starts_at": 1e20}', id="huge-timestamp"),
    pytest.param(b'{"title": "x", "starts_at": "2031-01-01T00:00:00+25:00"}', id="offset-25h"),
    pytest.param(b'{"title": "x\\u0000", "starts_at": "2031-01-01T00:00:00Z"}', id="nul-in-title"),
    pytest.param(
        b'{"title": "x", "starts_at": "0001-01-01T00:00:00+01:00"}', id="start-before-year-1-utc"
    ),
]


@pytest.mark.parametrize("content", GARBAGE_BODIES)
async def test_garbage_posted_as_an_event_is_a_4xx_with_a_detail(
    lenient_client: httpx.AsyncClient, organizer: dict[str, Any], content: bytes
) -> None:
    response = await lenient_client.post(
        "/events",
        content=content,
        headers={**organizer["headers"], "content-type": "application/json"},
    )

    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/events/%00", id="nul-id"),
        pytest.param("/events/..%2F..%2Fetc%2Fpasswd", id="traversal-id"),
        pytest.param("/events/" + "9" * 5000, id="long-id"),
        pytest.param(f"/events/{uuid.uuid4()}x", id="uuid-and-more"),
        pytest.param("/events?limit=1e3", id="limit-float"),
        pytest.param("/events?limit=99999999999999999999999", id="limit-huge"),
        pytest.param("/events?cursor=" + "A" * 201, id="cursor-too-long"),
        pytest.param("/events?cursor=%00", id="cursor-nul"),
        pytest.param(
            "/events?cursor=" + handmade_cursor("2031-01-01T00:00:00+00:00", 5),
            id="cursor-numeric-id",
        ),
        pytest.param(
            "/events?cursor=" + handmade_cursor("9999-12-31T23:00:00-05:00", str(uuid.uuid4())),
            id="cursor-after-year-9999-utc",
        ),
    ],
)
async def test_garbage_in_an_events_url_is_a_4xx_with_a_detail(
    lenient_client: httpx.AsyncClient, path: str
) -> None:
    response = await lenient_client.get(path)

    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()
