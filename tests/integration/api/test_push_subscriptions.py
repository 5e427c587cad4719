"""`/users/me/push-subscriptions`: what a browser's PushManager gave, stored once per endpoint."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from calendar_service.config import Settings
from tests.support.api import (
    PUSH_SUBSCRIPTIONS,
    api_client,
    b64url,
    browser_subscription,
    register,
)

pytestmark = pytest.mark.integration

PATH = PUSH_SUBSCRIPTIONS


async def test_a_new_subscription_is_stored_and_listed(client: httpx.AsyncClient) -> None:
    user = await register(client)
    body = browser_subscription()

    created = await client.post(PATH, json=body, headers=user["headers"])

    assert created.status_code == 201, created.text
    assert created.json()["endpoint"] == body["endpoint"]
    listed = await client.get(PATH, headers=user["headers"])
    assert [s["id"] for s in listed.json()] == [created.json()["id"]]


async def test_the_same_endpoint_twice_is_stored_once(client: httpx.AsyncClient) -> None:
    user = await register(client)
    body = browser_subscription()

    first = await client.post(PATH, json=body, headers=user["headers"])
    again = await client.post(PATH, json=body, headers=user["headers"])

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert len((await client.get(PATH, headers=user["headers"])).json()) == 1


async def test_an_endpoint_subscribed_by_another_user_moves_to_the_caller(
    client: httpx.AsyncClient,
) -> None:
    before, after = await register(client), await register(client)
    body = browser_subscription()
    first = await client.post(PATH, json=body, headers=before["headers"])

    moved = await client.post(
        PATH, json=browser_subscription(body["endpoint"]), headers=after["headers"]
    )

    assert moved.status_code == 200
    assert moved.json()["id"] == first.json()["id"]
    assert (await client.get(PATH, headers=before["headers"])).json() == []
    assert [s["id"] for s in (await client.get(PATH, headers=after["headers"])).json()] == [
        first.json()["id"]
    ]


async def test_a_user_may_have_several_subscriptions(client: httpx.AsyncClient) -> None:
    user = await register(client)
    for _ in range(2):
        response = await client.post(PATH, json=browser_subscription(), headers=user["headers"])
        assert response.status_code == 201

    assert len((await client.get(PATH, headers=user["headers"])).json()) == 2


async def test_delete_removes_the_callers_subscription(client: httpx.AsyncClient) -> None:
    user = await register(client)
    created = (await client.post(PATH, json=browser_subscription(), headers=user["headers"])).json()

    deleted = await client.delete(f"{PATH}/{created['id']}", headers=user["headers"])
    again = await client.delete(f"{PATH}/{created['id']}", headers=user["headers"])

    assert (deleted.status_code, again.status_code) == (204, 404)
    assert (await client.get(PATH, headers=user["headers"])).json() == []


async def test_deleting_someone_elses_subscription_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    owner, other = await register(client), await register(client)
    created = (
        await client.post(PATH, json=browser_subscription(), headers=owner["headers"])
    ).json()

    response = await client.delete(f"{PATH}/{created['id']}", headers=other["headers"])

    assert response.status_code == 404
    assert len((await client.get(PATH, headers=owner["headers"])).json()) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", PATH), ("GET", PATH), ("DELETE", f"{PATH}/{uuid.uuid4()}")],
)
async def test_push_subscriptions_need_a_signed_in_user(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=browser_subscription())

    assert response.status_code == 401


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    body = browser_subscription()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("endpoint",), "ftp://push.example.net/x"),
        (("endpoint",), "not a url"),
        (("endpoint",), "http://push.example.net/plain-http-elsewhere"),
        (("endpoint",), "https://user:secret@push.example.net/x"),
        (("endpoint",), "https://push.example.net/" + "x" * 2100),
        (("keys", "p256dh"), "not base64!"),
        (("keys", "p256dh"), b64url(b"\x04" + b"\x00" * 31)),  # too short
        (("keys", "p256dh"), b64url(b"\x02" + b"\x01" * 64)),  # not uncompressed
        (("keys", "auth"), b64url(b"\x00" * 8)),
        (("keys", "auth"), "+/+/+/+/+/+/+/+/+/+/+w"),  # standard base64, not base64url
        (("keys",), {"p256dh": b64url(b"\x04" + b"\x01" * 64)}),  # auth missing
    ],
)
async def test_a_bad_endpoint_or_key_is_a_422_naming_the_field(
    client: httpx.AsyncClient, field: tuple[str, ...], value: Any
) -> None:
    user = await register(client)

    response = await client.post(PATH, json=_with(field, value), headers=user["headers"])

    assert response.status_code == 422, response.text
    locations = [tuple(error["loc"][1:]) for error in response.json()["detail"]]
    assert any(loc[: len(field)] == field for loc in locations), locations


async def test_plain_http_to_loopback_is_accepted_outside_production(
    client: httpx.AsyncClient,
) -> None:
    user = await register(client)
    body = browser_subscription(f"http://127.0.0.1:8090/push/{uuid.uuid4().hex}")

    response = await client.post(PATH, json=body, headers=user["headers"])

    assert response.status_code == 201


async def test_plain_http_is_refused_in_production(calendar_settings: Settings) -> None:
    prod = calendar_settings.model_copy(
        update={"app_env": "prod", "jwt_secret": "a-real-secret-for-this-test-0123456789"}
    )
    async with api_client(prod) as client:
        user = await register(client)
        body = browser_subscription(f"http://127.0.0.1:8090/push/{uuid.uuid4().hex}")

        response = await client.post(PATH, json=body, headers=user["headers"])

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "endpoint"]


def _production(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"app_env": "prod", "jwt_secret": "a-real-secret-for-this-test-0123456789"}
    )


async def test_internal_addresses_are_refused_in_production(calendar_settings: Settings) -> None:
    """Literal internal addresses and a name resolving to loopback; nothing is connected to."""
    endpoints = [
        "https://127.0.0.1/push",
        "https://10.0.0.1/push",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/push",
        "https://[::ffff:10.0.0.1]/push",
        "https://localhost:8443/push",
    ]
    async with api_client(_production(calendar_settings)) as client:
        user = await register(client)
        answers = [
            await client.post(PATH, json=browser_subscription(e), headers=user["headers"])
            for e in endpoints
        ]
        listed = await client.get(PATH, headers=user["headers"])

    assert [a.status_code for a in answers] == [422] * len(endpoints), [a.text for a in answers]
    for answer in answers:
        (error,) = answer.json()["detail"]
        assert error["loc"] == ["body", "endpoint"]
        assert "must be a public push service address" in error["msg"]
    assert "a cloud metadata address" in answers[2].json()["detail"][0]["msg"]
    assert listed.json() == []


async def test_past_the_per_user_limit_a_new_subscription_is_a_409(
    client: httpx.AsyncClient, calendar_settings: Settings
) -> None:
    limit = calendar_settings.push_subscriptions_per_user
    assert limit == 20
    user = await register(client)
    bodies = [browser_subscription() for _ in range(limit)]
    for body in bodies:
        assert (await client.post(PATH, json=body, headers=user["headers"])).status_code == 201

    one_more = await client.post(PATH, json=browser_subscription(), headers=user["headers"])
    renewed = await client.post(
        PATH, json=browser_subscription(bodies[0]["endpoint"]), headers=user["headers"]
    )

    assert one_more.status_code == 409, one_more.text
    assert "at most 20 push subscriptions" in one_more.json()["detail"]
    assert renewed.status_code == 200  # re-posting a held endpoint (new keys) is not one more
    assert len((await client.get(PATH, headers=user["headers"])).json()) == limit
