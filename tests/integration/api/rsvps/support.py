"""What the RSVP tests look at: the outbox rows about an RSVP or an event, an event's counts.

Every accepted change must leave exactly one message in the outbox, committed
with it (design §6.1); the tests read the outbox table of the run's database.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from shared.schemas import Envelope, parse_message

CROWD_SIZE = 10

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
