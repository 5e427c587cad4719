"""`make seed-data`: what it loads, that the API serves it, that list queries use their index.

The index checks run EXPLAIN on the very statements the API sent for a deep
page, against a seeded database with enough rows (60,000 RSVPs, one event
with 6,000) that the planner picks between an index and a sequential scan
on real statistics. ``enable_seqscan=off`` would only show that an index
*could* be used; here a plan that stops using it fails the test.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from calendar_service.api.pagination import encode_cursor
from calendar_service.config import Settings
from calendar_service.security import TokenIssuer
from devtools.env import EnvSettings, _postgres_dsn
from devtools.seed.__main__ import PASSWORD, main_async, parse_args, seed_database
from devtools.seed.plan import SCALES, Scale
from tests.support.api import api_client
from tests.support.services import own_database

pytestmark = pytest.mark.integration

SCALE = Scale(events=2_000, rsvps=60_000, users=8_000, biggest=6_000)


@dataclass
class Seeded:
    dsn: str
    settings: Settings
    statements: list[tuple[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def seeded(env_settings: EnvSettings, calendar_settings: Settings) -> AsyncIterator[Seeded]:
    async with own_database(env_settings) as url:
        dsn = _postgres_dsn(url)
        await seed_database(dsn, SCALE, mode="empty")
        yield Seeded(dsn, calendar_settings.model_copy(update={"database_url": url}))


@pytest.fixture(scope="module")
async def db(seeded: Seeded) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(seeded.dsn)
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
async def api(seeded: Seeded) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the seeded database, recording every statement it sends."""
    async with api_client(seeded.settings) as client:
        container = client._transport.app.state.container  # type: ignore[attr-defined]

        def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            seeded.statements.append((statement, params))

        event.listen(container.engine.sync_engine, "before_cursor_execute", record)
        yield client


async def _biggest(db: asyncpg.Connection) -> asyncpg.Record:
    return await db.fetchrow("SELECT * FROM events ORDER BY going_count DESC LIMIT 1")


# --- what is loaded ------------------------------------------------------------------------


async def test_the_seed_loads_the_rows_it_was_asked_for(db: asyncpg.Connection) -> None:
    counts = {
        table: await db.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
        for table in ("users", "events", "rsvps", "delivery_status", "push_subscriptions")
    }
    attendees = await db.fetchval("SELECT count(*) FROM rsvps GROUP BY event_id ORDER BY 1 DESC")
    outbox = await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")

    assert counts == {
        "users": SCALE.users,
        "events": SCALE.events,
        "rsvps": SCALE.rsvps,
        "delivery_status": 2 * SCALE.rsvps,  # email and push for every RSVP
        "push_subscriptions": math.ceil(SCALE.users * SCALE.push_share),
    }
    assert attendees == SCALE.biggest
    assert (
        SCALE.rsvps * SCALE.outbox_share
        <= outbox
        <= SCALE.rsvps * SCALE.outbox_share + SCALE.events
    )
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_event_counters_add_up_to_the_seeded_rsvps(db: asyncpg.Connection) -> None:
    wrong = await db.fetchval(
        """
        SELECT count(*) FROM events e LEFT JOIN (
            SELECT event_id,
                   count(*) FILTER (WHERE status = 'going') AS going,
                   count(*) FILTER (WHERE status = 'maybe') AS maybe,
                   count(*) FILTER (WHERE status = 'declined') AS declined,
                   coalesce(sum(1 + guests) FILTER (WHERE status = 'going'), 0) AS seats
            FROM rsvps GROUP BY event_id
        ) r ON r.event_id = e.id
        WHERE (e.going_count, e.maybe_count, e.declined_count, e.going_seats)
              IS DISTINCT FROM (r.going, r.maybe, r.declined, r.seats)
        """
    )
    assert wrong == 0


# --- the API reads it ----------------------------------------------------------------------


async def test_the_api_serves_a_seeded_event_with_its_counts(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    biggest = await _biggest(db)

    response = await api.get(f"/events/{biggest['id']}")

    assert response.status_code == 200, response.text
    counts = response.json()["rsvp_counts"]
    assert (counts["going"], counts["maybe"]) == (biggest["going_count"], biggest["maybe_count"])


async def test_a_seeded_user_logs_in_and_the_organizer_pages_through_rsvps(
    api: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    email = await db.fetchval("SELECT email FROM users ORDER BY email LIMIT 1")
    login = await api.post("/auth/token", data={"username": email, "password": PASSWORD})
    biggest = await _biggest(db)

    first = await api.get(
        f"/events/{biggest['id']}/rsvps",
        params={"limit": 50},
        headers=_as(biggest["organizer_id"]),
    )
    second = await api.get(
        f"/events/{biggest['id']}/rsvps",
        params={"limit": 50, "cursor": first.json()["next_cursor"]},
        headers=_as(biggest["organizer_id"]),
    )

    assert login.status_code == 200, login.text
    assert first.status_code == second.status_code == 200
    ids = [r["id"] for r in first.json()["items"] + second.json()["items"]]
    assert len(set(ids)) == 100


def _as(user_id: Any) -> dict[str, str]:
    from calendar_service.config import DEV_JWT_SECRET

    token = TokenIssuer(DEV_JWT_SECRET, timedelta(hours=1)).issue(user_id, "user")
    return {"Authorization": f"Bearer {token}"}


# --- the list queries use their indexes -----------------------------------------------------


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]


async def _plan_of_last_list_query(seeded: Seeded, db: asyncpg.Connection) -> list[dict[str, Any]]:
    statement, params = next(
        (s, p) for s, p in reversed(seeded.statements) if "ORDER BY" in s and "LIMIT" in s
    )
    plan = await db.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *params)
    import json

    return _nodes(json.loads(plan)[0]["Plan"])


def _scans(nodes: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Table -> how it was read: "Seq Scan", or the name of the index used."""
    reads: dict[str, set[str]] = {}
    for node in nodes:
        if "Relation Name" in node:
            how = node.get("Index Name", node["Node Type"])
            reads.setdefault(node["Relation Name"], set()).add(how)
    return reads


async def _deep_rsvp_cursor(db: asyncpg.Connection, event_id: Any, status: str | None) -> str:
    row = await db.fetchrow(
        "SELECT created_at, id FROM rsvps WHERE event_id = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY created_at, id OFFSET 4000 LIMIT 1",
        event_id,
        status,
    )
    return encode_cursor(row["created_at"], row["id"])


@pytest.mark.parametrize("status", [None, "going"])
async def test_a_deep_rsvp_page_reads_its_index(
    api: httpx.AsyncClient, seeded: Seeded, db: asyncpg.Connection, status: str | None
) -> None:
    biggest = await _biggest(db)
    params: dict[str, Any] = {
        "limit": 50,
        "cursor": await _deep_rsvp_cursor(db, biggest["id"], status),
    }
    if status:
        params["status"] = status

    response = await api.get(
        f"/events/{biggest['id']}/rsvps", params=params, headers=_as(biggest["organizer_id"])
    )
    nodes = await _plan_of_last_list_query(seeded, db)

    assert response.status_code == 200, response.text
    expected = (
        "ix_rsvps_event_id_status_created_at_id" if status else "ix_rsvps_event_id_created_at_id"
    )
    scans = _scans(nodes)
    assert scans["rsvps"] == {expected}, scans
    assert scans["users"] == {"pk_users"}, scans
    assert not [n for n in nodes if n["Node Type"] == "Sort"]  # the index gives the order


async def test_a_deep_event_list_page_reads_its_index(
    api: httpx.AsyncClient, seeded: Seeded, db: asyncpg.Connection
) -> None:
    row = await db.fetchrow(
        "SELECT starts_at, id FROM events ORDER BY starts_at, id OFFSET 1500 LIMIT 1"
    )

    response = await api.get(
        "/events", params={"cursor": encode_cursor(row["starts_at"], row["id"])}
    )
    nodes = await _plan_of_last_list_query(seeded, db)

    assert response.status_code == 200, response.text
    assert _scans(nodes) == {"events": {"ix_events_starts_at_id"}}
    assert not [n for n in nodes if n["Node Type"] == "Sort"]


# --- refusing a database with data --------------------------------------------------------


async def test_a_database_with_data_is_refused_unless_appending(
    env_settings: EnvSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    from rich.console import Console

    tiny = SCALES["tiny"]
    async with own_database(env_settings) as url:
        dsn = _postgres_dsn(url)
        await seed_database(dsn, tiny, mode="empty")
        console = Console(width=200)

        refused = await main_async(parse_args(["--scale", "tiny", "--database-url", url]), console)
        appended = await main_async(
            parse_args(["--scale", "tiny", "--database-url", url, "--append"]), console
        )
        connection = await asyncpg.connect(dsn)
        try:
            rsvps = await connection.fetchval("SELECT count(*) FROM rsvps")
        finally:
            await connection.close()

    assert refused == 2
    assert "already holds rows" in capsys.readouterr().out
    assert appended == 0
    assert rsvps == 2 * tiny.rsvps
