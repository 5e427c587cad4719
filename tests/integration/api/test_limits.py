"""Limits of design §8 against the real Redis: 429 with Retry-After, per IP, account and user.

Each test has its own client address and its own users, so runs never collide.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from redis.asyncio import Redis

from calendar_service.app import create_app
from calendar_service.config import Settings
from calendar_service.ratelimit import Admission
from tests.support.api import PASSWORD, as_the_api, create_event, random_email, register

pytestmark = pytest.mark.integration


def _random_ip() -> str:
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


@asynccontextmanager
async def _client(settings: Settings, **limits: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API with ``limits`` over the suite's settings, seen from a fresh client address."""
    app = create_app(as_the_api(settings).model_copy(update=limits))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(_random_ip(), 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


def test_the_defaults_are_those_of_design_section_8() -> None:
    settings = Settings()

    assert settings.login_limit == "5/minute"
    assert settings.register_limit == "10/hour"
    assert settings.rate_limit_anonymous == "60/minute"
    assert settings.rate_limit_user == "600/minute"
    assert settings.rate_limit_admin == "6000/minute"
    assert settings.rsvp_change_limit == "30/hour"


async def test_registrations_past_the_limit_are_refused_with_retry_after(
    calendar_settings: Settings,
) -> None:
    async with _client(calendar_settings, register_limit="2/hour") as client:
        await register(client)
        await register(client)
        body = {"email": random_email(), "password": PASSWORD, "name": "Eve"}
        refused = await client.post("/auth/register", json=body)

    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1


async def test_sign_ins_are_limited_per_account_from_any_address(
    calendar_settings: Settings,
) -> None:
    email = random_email()
    async with _client(calendar_settings, login_limit="2/minute") as client:
        await register(client, email=email)  # one sign-in
        await client.post("/auth/token", data={"username": email, "password": "wrong!!!"})
    async with _client(calendar_settings, login_limit="2/minute") as elsewhere:
        refused = await elsewhere.post("/auth/token", data={"username": email, "password": "x"})

    assert refused.status_code == 429
    assert "retry-after" in refused.headers


async def test_sign_ins_are_limited_per_client_address(calendar_settings: Settings) -> None:
    async with _client(calendar_settings, login_limit="3/minute") as client:
        statuses = [
            (await client.post("/auth/token", data={"username": random_email(), "password": "x"}))
            for _ in range(4)
        ]

    assert [r.status_code for r in statuses] == [401, 401, 401, 429]


async def test_anonymous_requests_are_limited_per_address_but_health_is_not(
    calendar_settings: Settings,
) -> None:
    async with _client(calendar_settings, rate_limit_anonymous="2/minute") as client:
        answers = [(await client.get("/openapi.json")).status_code for _ in range(3)]
        health = [(await client.get("/healthz")).status_code for _ in range(3)]

    assert answers == [200, 200, 429]
    assert health == [200, 200, 200]


async def test_a_user_past_the_tier_limit_is_refused(calendar_settings: Settings) -> None:
    async with _client(calendar_settings, rate_limit_user="3/minute") as client:
        user = await register(client)
        event = await create_event(client, user)  # the first of three
        path = f"/events/{event['id']}/rsvps"
        answers = [(await client.get(path, headers=user["headers"])) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1].headers["retry-after"]) >= 1


async def test_rsvp_changes_are_limited_per_user_and_replays_do_not_count(
    calendar_settings: Settings,
) -> None:
    async with _client(calendar_settings, rsvp_change_limit="2/hour") as client:
        organizer, guest = await register(client), await register(client)
        event = await create_event(client, organizer)
        path = f"/events/{event['id']}/rsvps"
        key = {"Idempotency-Key": str(uuid.uuid4()), **guest["headers"]}
        first = await client.post(path, json={"status": "going"}, headers=key)
        replayed = await client.post(path, json={"status": "going"}, headers=key)
        second = await client.post(path, json={"status": "maybe"}, headers=guest["headers"])
        third = await client.post(path, json={"status": "declined"}, headers=guest["headers"])

    assert (first.status_code, second.status_code) == (201, 200)
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert third.status_code == 429
    assert "RSVP changed too often" in third.json()["detail"]


async def test_with_redis_down_tiers_fail_open_and_sign_ins_fail_closed(
    calendar_settings: Settings,
) -> None:
    async with _client(calendar_settings) as client:
        user = await register(client)
        client_app = client._transport.app  # type: ignore[attr-defined]
        admission = client_app.state.container.admission
        # a Redis nobody listens on: every count fails as with Redis stopped
        client_app.state.container.admission = Admission(
            Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
        )
        try:
            events = await client.post(
                "/events",
                json={"title": "x", "starts_at": "2100-01-01T10:00:00Z"},
                headers=user["headers"],
            )
            sign_in = await client.post(
                "/auth/token", data={"username": user["email"], "password": PASSWORD}
            )
        finally:
            client_app.state.container.admission = admission

    assert events.status_code == 201
    assert sign_in.status_code == 503
