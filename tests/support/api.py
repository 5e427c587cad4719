"""Drive the calendar API in-process (httpx + ASGI) with its real lifespan."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from calendar_service.app import create_app
from calendar_service.config import Settings
from calendar_service.security import TokenIssuer
from tests.support.services import as_role

#: Limits roomy enough for a suite that registers hundreds of users from one
#: client address; tests/integration/api/test_limits.py checks the real defaults.
SUITE_LIMITS: dict[str, str] = {
    "login_limit": "100000/minute",
    "register_limit": "100000/minute",
    "rate_limit_anonymous": "100000/minute",
    "rate_limit_user": "100000/minute",
    "rsvp_change_limit": "100000/minute",
}


def as_the_api(settings: Settings) -> Settings:
    """``settings`` with the API's own database role (migration 0011), as it runs in production."""
    return settings.model_copy(update={"database_url": as_role(settings.database_url, "rsvp_api")})


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(as_the_api(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


def random_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def register(
    client: httpx.AsyncClient, *, email: str | None = None, name: str = "Ada Lovelace"
) -> dict[str, Any]:
    """Register and log in; returns the user plus an Authorization header."""
    email = email or random_email()
    response = await client.post(
        "/auth/register", json={"email": email, "password": "correct horse", "name": name}
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    token = await client.post("/auth/token", data={"username": email, "password": "correct horse"})
    assert token.status_code == 200, token.text
    user["headers"] = {"Authorization": f"Bearer {token.json()['access_token']}"}
    return user


async def create_event(
    client: httpx.AsyncClient, organizer: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    starts = datetime.now(UTC) + timedelta(days=7)
    body = {"title": "Launch party", "starts_at": starts.isoformat(), **fields}
    response = await client.post("/events", json=body, headers=organizer["headers"])
    assert response.status_code == 201, response.text
    event: dict[str, Any] = response.json()
    return event


# --- helpers for the API specification tests -------------------------------------------------

ADMIN_EMAIL = "admin@example.com"
PASSWORD = "correct horse"


@asynccontextmanager
async def api_client_answering_errors(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Like `api_client`, but an unhandled error comes back as the 500 a real server sends.

    `api_client` raises app errors into the test, which is what a failing test
    wants; a sweep asserting `status < 500` over many inputs wants the status.
    """
    app = create_app(as_the_api(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


async def log_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


async def admin(client: httpx.AsyncClient) -> dict[str, Any]:
    """The run's admin (ADMIN_EMAILS of the test settings), registered on first use."""
    response = await client.post(
        "/auth/register", json={"email": ADMIN_EMAIL, "password": PASSWORD, "name": "Operator"}
    )
    assert response.status_code in (201, 409), response.text
    token = await log_in(client, ADMIN_EMAIL)
    assert token.status_code == 200, token.text
    return {"email": ADMIN_EMAIL, "headers": auth_header(token.json()["access_token"])}


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register_with_issued_token(
    client: httpx.AsyncClient, settings: Settings, *, name: str = "Crowd Member"
) -> dict[str, Any]:
    """Register through the API, then sign the token with the service's own issuer.

    Logging in verifies an argon2 hash (a third of a second on a small
    machine); tests that need a crowd of users skip that step, not the account.
    """
    email = random_email("crowd")
    response = await client.post(
        "/auth/register", json={"email": email, "password": PASSWORD, "name": name}
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    issuer = TokenIssuer(settings.jwt_secret, timedelta(seconds=settings.jwt_ttl_seconds))
    user["headers"] = auth_header(issuer.issue(uuid.UUID(user["id"]), user["role"]))
    return user


async def post_rsvp(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    user: dict[str, Any],
    status: str = "going",
    guests: int = 0,
    *,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = dict(user["headers"])
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return await client.post(
        f"/events/{event['id']}/rsvps", json={"status": status, "guests": guests}, headers=headers
    )


def handmade_cursor(*parts: object) -> str:
    """A page cursor built by hand in the service's encoding, to probe how cursors are read."""
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


# --- push subscriptions ----------------------------------------------------------------------

PUSH_SUBSCRIPTIONS = "/users/me/push-subscriptions"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_subscription(endpoint: str | None = None) -> dict[str, Any]:
    """What ``PushSubscription.toJSON()`` returns in a browser: real P-256 key, 16-byte secret."""
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": endpoint or f"https://push.example.net/wpush/v2/{uuid.uuid4().hex}",
        "keys": {"p256dh": b64url(point), "auth": b64url(secrets.token_bytes(16))},
    }
