"""Who is admin (design §7): granted by an operator, read from the database on admin requests."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from typer.testing import CliRunner

from calendar_service.admin import app as admin_cli
from calendar_service.config import Settings
from calendar_service.db.session import create_engine
from calendar_service.db.uow import UnitOfWork
from calendar_service.usecases.accounts import Role, change_role
from tests.support.api import admin, api_client, random_email, register

pytestmark = pytest.mark.integration


async def _set_role(settings: Settings, email: str, role: Role) -> None:
    engine = create_engine(settings)
    try:
        async with UnitOfWork(engine) as uow:
            await change_role(uow, email=email, role=role, actor="test")
    finally:
        await engine.dispose()


async def test_a_granted_role_acts_at_once_and_a_revoke_stops_the_same_token(
    client: httpx.AsyncClient, calendar_settings: Settings
) -> None:
    user = await register(client)
    assert (await client.get("/admin/dlq/summary", headers=user["headers"])).status_code == 403

    await _set_role(calendar_settings, user["email"], "admin")
    # the token still says "user": the database decides
    assert (await client.get("/admin/dlq/summary", headers=user["headers"])).status_code == 200

    await _set_role(calendar_settings, user["email"], "user")
    assert (await client.get("/admin/dlq/summary", headers=user["headers"])).status_code == 403


async def test_a_role_change_is_in_the_audit_log(
    client: httpx.AsyncClient, calendar_settings: Settings
) -> None:
    user, operator = await register(client), await admin(client)

    await _set_role(calendar_settings, user["email"], "admin")
    await _set_role(calendar_settings, user["email"], "user")
    audit = (await client.get("/admin/audit", headers=operator["headers"])).json()["items"]

    mine = [(e["action"], e["actor"]) for e in audit if e["target"] == user["email"]]
    assert mine == [("revoke admin", "test"), ("grant admin", "test")]


def test_the_cli_refuses_an_unknown_email_with_exit_code_2(calendar_settings: Settings) -> None:
    result = CliRunner().invoke(
        admin_cli,
        ["grant", random_email("nobody")],
        env={"DATABASE_URL": calendar_settings.database_url},
    )

    assert result.exit_code == 2
    assert "no account" in result.output


def test_the_cli_grants_and_revokes(calendar_settings: Settings) -> None:
    email = random_email("operator")

    async def arrange() -> None:
        async with api_client(calendar_settings) as client:
            await register(client, email=email)

    asyncio.run(arrange())
    env = {"DATABASE_URL": calendar_settings.database_url}

    granted = CliRunner().invoke(admin_cli, ["grant", email], env=env)
    revoked = CliRunner().invoke(admin_cli, ["revoke", email], env=env)

    assert granted.exit_code == 0, granted.output
    assert "role is now admin" in granted.output
    assert revoked.exit_code == 0, revoked.output
    assert "role is now user" in revoked.output
