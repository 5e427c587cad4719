"""Overload of the event loop: an API offered many times what it may hold in flight sheds the rest.

Design §8: when the API cannot take more it answers 503 with ``Retry-After``
within a second, never a 500, and what it accepted is kept. Here the API
runs as an operator runs it (``python -m calendar_service``) with
``MAX_REQUESTS_IN_FLIGHT=8``, and 300 keyed RSVPs from 300 users arrive at
once, written on connections opened beforehand (``tests/support/burst.py``:
an httpx client on this busy machine would send them over seconds, and the
API would never see them together). Each answer is 201 or a quick 503;
each 503 tried again under its key ends in a 201; every RSVP has its outbox
message, once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from calendar_service.config import Settings
from calendar_service.security import TokenIssuer
from tests.support.api import auth_header, create_event, register
from tests.support.burst import burst, post_json
from tests.support.replicas import Replica, api_replicas, replica_env, scratch_directory
from tests.support.services import BrokerEnv, as_role

# starting the API process and 300 answers; a loaded machine makes both slow
pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

IN_FLIGHT = 8
OFFERED = 300
#: Design §8's bound for a 503, from its request written to its answer read.
REFUSED_WITHIN_S = 1.0


@pytest.fixture(scope="module")
async def small_api(
    database_url: str, broker: BrokerEnv, calendar_settings: Settings
) -> AsyncIterator[Replica]:
    env = replica_env(
        as_role(database_url, "rsvp_api"),
        broker.amqp_url("calendar"),
        MAX_REQUESTS_IN_FLIGHT=str(IN_FLIGHT),
        JWT_SECRET=calendar_settings.jwt_secret,
    )
    async with (
        scratch_directory("rsvp-admission-") as directory,
        api_replicas(1, env, directory) as (replica,),
    ):
        yield replica


async def _users(database: asyncpg.Connection, settings: Settings) -> list[dict[str, str]]:
    """Authorization headers of new accounts written straight to the table (no argon2 each)."""
    issuer = TokenIssuer(settings.jwt_secret, timedelta(seconds=settings.jwt_ttl_seconds))
    ids = [uuid.uuid4() for _ in range(OFFERED)]
    await database.executemany(
        "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, 'unused')",
        [(i, f"shed-{i.hex[:12]}@example.com", f"Shed {n}") for n, i in enumerate(ids)],
    )
    return [auth_header(issuer.issue(i, "user")) for i in ids]


async def _shed_by_reason(client: httpx.AsyncClient) -> dict[str, float]:
    exposed = (await client.get("/metrics")).text
    return {
        sample.labels["reason"]: sample.value
        for family in text_string_to_metric_families(exposed)
        if family.name == "http_requests_shed"
        for sample in family.samples
        if sample.name == "http_requests_shed_total"
    }


async def _until_accepted(
    client: httpx.AsyncClient, event_id: str, headers: dict[str, str], key: str
) -> httpx.Response:
    """The same request under its key until it is not refused as busy, as a client retries."""
    async with asyncio.timeout(20):
        while True:
            response = await client.post(
                f"/events/{event_id}/rsvps",
                json={"status": "going"},
                headers={**headers, "Idempotency-Key": key},
            )
            if response.status_code != 503:
                return response
            await asyncio.sleep(float(response.headers["Retry-After"]))


async def test_a_burst_beyond_the_in_flight_limit_is_answered_201_or_a_quick_503_and_loses_nothing(
    small_api: Replica, calendar_settings: Settings, database: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=small_api.url, timeout=30) as client:
        organizer = await register(client, name="Shedding Organizer")
        event_id = (await create_event(client, organizer))["id"]
        users = await _users(database, calendar_settings)
        keys = [str(uuid.uuid4()) for _ in users]
        requests = [
            post_json(
                small_api.address,
                f"/events/{event_id}/rsvps",
                b'{"status": "going"}',
                {**headers, "Idempotency-Key": key},
            )
            for headers, key in zip(users, keys, strict=True)
        ]
        shed_before = await _shed_by_reason(client)

        answers = await burst("127.0.0.1", small_api.port, requests)

        statuses = [answer.status for answer in answers]
        assert set(statuses) <= {201, 503}, [a.body for a in answers if a.status >= 500]
        assert 201 in statuses, "the API kept working through the burst"
        assert 503 in statuses, "the API shed what it could not hold"
        refused = [answer for answer in answers if answer.status == 503]
        for answer in refused:
            assert answer.headers["retry-after"] == "1"
            assert orjson.loads(answer.body) == {"detail": "the service is busy, try again shortly"}
            assert answer.took_s < REFUSED_WITHIN_S, answer.took_s
        shed = await _shed_by_reason(client)
        newly_shed = sum(shed.values()) - sum(shed_before.values())
        assert newly_shed == len(refused), shed
        assert shed.get("in_flight", 0) > shed_before.get("in_flight", 0), shed

        retried = await asyncio.gather(
            *(
                _until_accepted(client, event_id, users[n], keys[n])
                for n, status in enumerate(statuses)
                if status == 503
            )
        )

    assert {r.status_code for r in retried} <= {201}, [r.text for r in retried]
    accepted = [orjson.loads(a.body)["id"] for a in answers if a.status == 201]
    accepted += [r.json()["id"] for r in retried]
    assert len(set(accepted)) == OFFERED
    stored = await database.fetchval(
        "SELECT count(*) FROM rsvps WHERE event_id = $1", uuid.UUID(event_id)
    )
    assert stored == OFFERED, "a 503 wrote nothing, so each answer is stored once"
    published = await database.fetch(
        "SELECT convert_from(body, 'UTF8')::jsonb->'data'->>'rsvp_id' AS rsvp_id FROM outbox"
        " WHERE convert_from(body, 'UTF8')::jsonb->'data'->>'rsvp_id' = ANY($1)",
        accepted,
    )
    assert sorted(row["rsvp_id"] for row in published) == sorted(accepted)
