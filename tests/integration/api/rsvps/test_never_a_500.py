"""Garbage in an RSVP body, URL or Idempotency-Key is a 4xx with a detail, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import handmade_cursor

pytestmark = pytest.mark.integration


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
