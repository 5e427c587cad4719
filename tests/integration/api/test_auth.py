"""Accounts and tokens: who gets in, as what, and how the door says no."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from calendar_service.config import Settings
from tests.support.api import (
    PASSWORD,
    api_client,
    api_client_answering_errors,
    auth_header,
    log_in,
    random_email,
    register,
)

pytestmark = pytest.mark.integration

AUDIENCE = "rsvp-calendar"


def _registration(**fields: Any) -> dict[str, Any]:
    return {"email": random_email(), "password": PASSWORD, "name": "Grace Hopper", **fields}


def _token(
    secret: str | None, *, sub: str, expires_in: timedelta, algorithm: str = "HS256", **claims: Any
) -> str:
    """A JWT like the service's own; a claim given as None is left out."""
    now = datetime.now(UTC)
    payload = {"sub": sub, "role": "user", "aud": AUDIENCE, "iat": now, "exp": now + expires_in}
    payload = {k: v for k, v in {**payload, **claims}.items() if v is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)


def _event_body() -> dict[str, str]:
    return {"title": "Members only", "starts_at": "2031-05-01T18:00:00+00:00"}


def _assert_bearer_challenge(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


@pytest.fixture(scope="module")
async def member(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client)


@pytest.fixture(scope="module")
async def lenient_client(calendar_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The same API, answering an unhandled error with the 500 a real server would send."""
    async with api_client_answering_errors(calendar_settings) as client:
        yield client


# --- registration -----------------------------------------------------------------------------


async def test_registering_returns_the_new_user_with_role_user(client: httpx.AsyncClient) -> None:
    body = _registration(email=random_email("Mixed.Case").replace("example.com", "Example.COM"))

    response = await client.post("/auth/register", json=body)

    assert response.status_code == 201, response.text
    user = response.json()
    assert user["role"] == "user"
    assert user["email"] == body["email"].lower()
    assert user["name"] == "Grace Hopper"
    assert uuid.UUID(user["id"])
    assert "password" not in user
    assert "password_hash" not in user


async def test_an_address_listed_in_admin_emails_registers_as_admin_in_any_letter_case(
    calendar_settings: Settings,
) -> None:
    # an app of its own, so this test owns its admin address whatever else the run registered
    admin_email = random_email("operator")
    settings = calendar_settings.model_copy(update={"admin_emails": frozenset({admin_email})})
    async with api_client(settings) as client:
        response = await client.post(
            "/auth/register", json=_registration(email=admin_email.upper())
        )

    assert response.status_code == 201, response.text
    assert response.json()["role"] == "admin"
    assert response.json()["email"] == admin_email


async def test_registering_an_email_twice_is_a_conflict_whatever_its_letter_case(
    client: httpx.AsyncClient,
) -> None:
    email = random_email()
    first = await client.post("/auth/register", json=_registration(email=email))
    assert first.status_code == 201, first.text

    again = await client.post("/auth/register", json=_registration(email=email.upper()))

    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "email is already registered"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("password", "short"),
        ("password", "x" * 129),
        ("email", "not-an-email"),
        ("email", "two@@example.com"),
        ("email", ""),
        ("name", ""),
        ("name", "   "),
        ("name", "x" * 121),
        ("name", "Ada\nLovelace"),
        ("name", "Ada\tLovelace"),
        ("name", "Ada\x00"),
        ("name", "\x1b[31mred"),
        ("name", "Ada\x7fLovelace"),
        ("name", "Ada\x85Lovelace"),
        ("name", 42),
        ("email", None),
    ],
    ids=lambda value: repr(value)[:20],
)
async def test_an_invalid_registration_field_is_a_422_naming_that_field(
    client: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await client.post("/auth/register", json=_registration(**{field: value}))

    assert response.status_code == 422, response.text
    assert ["body", field] in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("missing", ["email", "password", "name"])
async def test_a_missing_registration_field_is_a_422_naming_that_field(
    client: httpx.AsyncClient, missing: str
) -> None:
    body = _registration()
    del body[missing]

    response = await client.post("/auth/register", json=body)

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [(["body", missing], "missing")]


# --- tokens -------------------------------------------------------------------------------


async def test_a_token_from_the_password_form_opens_the_api(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    response = await log_in(client, member["email"].upper())

    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "bearer"
    created = await client.post(
        "/events", json=_event_body(), headers=auth_header(token["access_token"])
    )
    assert created.status_code == 201, created.text
    assert created.json()["organizer_id"] == member["id"]


async def test_a_wrong_password_gets_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    response = await log_in(client, member["email"], password="wrong horse")

    _assert_bearer_challenge(response)


async def test_an_unknown_user_gets_the_same_401_as_a_wrong_password(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    wrong_password = await log_in(client, member["email"], password="wrong horse")

    unknown = await log_in(client, random_email("nobody"))

    _assert_bearer_challenge(unknown)
    assert unknown.json() == wrong_password.json()


async def test_the_token_form_without_a_password_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/auth/token", data={"username": random_email()})

    assert response.status_code == 422, response.text
    assert ["body", "password"] in [error["loc"] for error in response.json()["detail"]]


async def test_a_username_with_a_nul_byte_is_refused_not_a_server_error(
    client: httpx.AsyncClient,
) -> None:
    # PostgreSQL text cannot hold U+0000; the lookup must not reach it
    response = await log_in(client, "ada\x00@example.com")

    _assert_bearer_challenge(response)


# --- bearer tokens on a protected endpoint ------------------------------------------------


async def test_a_request_without_a_token_gets_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/events", json=_event_body())

    _assert_bearer_challenge(response)
    assert response.json() == {"detail": "not authenticated"}


async def test_an_expired_token_gets_401(
    client: httpx.AsyncClient, calendar_settings: Settings, member: dict[str, Any]
) -> None:
    token = _token(calendar_settings.jwt_secret, sub=member["id"], expires_in=timedelta(minutes=-1))

    response = await client.post("/events", json=_event_body(), headers=auth_header(token))

    _assert_bearer_challenge(response)


async def test_a_token_signed_with_another_secret_gets_401(
    client: httpx.AsyncClient, member: dict[str, Any]
) -> None:
    token = _token(
        "an-attacker-s-secret-of-32-characters!", sub=member["id"], expires_in=timedelta(hours=1)
    )

    response = await client.post("/events", json=_event_body(), headers=auth_header(token))

    _assert_bearer_challenge(response)


@pytest.mark.parametrize(
    ("claims", "algorithm"),
    [
        pytest.param({"aud": "another-service"}, "HS256", id="wrong-audience"),
        pytest.param({"aud": None}, "HS256", id="no-audience"),
        pytest.param({"exp": None}, "HS256", id="no-expiry"),
        pytest.param({"sub": "not-a-uuid"}, "HS256", id="subject-not-a-uuid"),
        pytest.param({"role": "admin"}, "none", id="unsigned"),
    ],
)
async def test_a_token_with_bad_claims_gets_401(
    client: httpx.AsyncClient,
    calendar_settings: Settings,
    member: dict[str, Any],
    claims: dict[str, Any],
    algorithm: str,
) -> None:
    secret = None if algorithm == "none" else calendar_settings.jwt_secret
    claims = {"sub": member["id"], **claims}
    token = _token(secret, expires_in=timedelta(hours=1), algorithm=algorithm, **claims)

    response = await client.post("/events", json=_event_body(), headers=auth_header(token))

    _assert_bearer_challenge(response)


@pytest.mark.parametrize("scheme_and_token", ["Bearer", "Bearer not.a.jwt", "Basic YWRhOnB3"])
async def test_a_malformed_authorization_header_gets_401(
    client: httpx.AsyncClient, scheme_and_token: str
) -> None:
    response = await client.post(
        "/events", json=_event_body(), headers={"Authorization": scheme_and_token}
    )

    _assert_bearer_challenge(response)


@pytest.mark.parametrize(
    "idempotency_key",
    [None, "ghost-key"],
    ids=["plain", "with-idempotency-key"],
)
async def test_a_valid_token_of_a_user_that_does_not_exist_cannot_rsvp(
    lenient_client: httpx.AsyncClient,
    calendar_settings: Settings,
    member: dict[str, Any],
    idempotency_key: str | None,
) -> None:
    # a signed token that outlived its account, or came from another database with the secret
    event = await lenient_client.post("/events", json=_event_body(), headers=member["headers"])
    ghost = _token(
        calendar_settings.jwt_secret, sub=str(uuid.uuid4()), expires_in=timedelta(hours=1)
    )
    headers = auth_header(ghost)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key

    response = await lenient_client.post(
        f"/events/{event.json()['id']}/rsvps", json={"status": "going"}, headers=headers
    )

    _assert_bearer_challenge(response)


async def test_a_valid_token_of_a_user_that_does_not_exist_cannot_create_an_event(
    lenient_client: httpx.AsyncClient, calendar_settings: Settings
) -> None:
    ghost = _token(
        calendar_settings.jwt_secret, sub=str(uuid.uuid4()), expires_in=timedelta(hours=1)
    )

    response = await lenient_client.post("/events", json=_event_body(), headers=auth_header(ghost))

    _assert_bearer_challenge(response)


# --- never a 500 --------------------------------------------------------------------------


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
GARBAGE = [
    pytest.param(JSON, b"", id="empty"),
    pytest.param(JSON, b"{", id="truncated-json"),
    pytest.param(JSON, b"null", id="null"),
    pytest.param(JSON, b"[]", id="array"),
    pytest.param(JSON, b'"ada@example.com"', id="string"),
    pytest.param(JSON, b"\xff\xfe\xfd", id="not-utf8"),
    pytest.param(JSON, b"[" * 5000, id="deeply-nested"),
    pytest.param(JSON, b'{"email": {"$ne": null}, "password": [], "name": {}}', id="objects"),
    pytest.param(
        JSON,
        b'{"email": "a@example.com", "password": "\\ud800xxxxxxx", "name": "x"}',
        id="surrogate",
    ),
    pytest.param(
        JSON, b'{"email": "a\\u0000@example.com", "password": "12345678", "name": "x"}', id="nul"
    ),
    pytest.param("text/plain", b"email=a@example.com", id="text-plain"),
    pytest.param(FORM, b"username=%00&password=%FF%FE", id="form-nul-username"),
    pytest.param(FORM, b"username=&password=", id="form-empty-fields"),
    pytest.param(FORM, b"%%%=&&&", id="form-broken-escapes"),
    pytest.param("multipart/form-data; boundary=x", b"--x\r\nnot a part\r\n--x--", id="multipart"),
    pytest.param("multipart/form-data", b"no boundary", id="multipart-no-boundary"),
]


@pytest.mark.parametrize("path", ["/auth/register", "/auth/token"])
@pytest.mark.parametrize(("content_type", "content"), GARBAGE)
async def test_garbage_sent_to_the_auth_endpoints_is_a_4xx_with_a_detail(
    lenient_client: httpx.AsyncClient, path: str, content_type: str, content: bytes
) -> None:
    response = await lenient_client.post(
        path, content=content, headers={"content-type": content_type}
    )

    assert 400 <= response.status_code < 500, response.text
    assert "detail" in response.json()
