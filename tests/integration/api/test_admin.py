"""The admin API over the dead-letter queues (design §3), backed by the dead-letter store."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from calendar_service.config import Settings
from shared.messaging.topology import PUSH_COMMANDS
from tests.support.api import admin, register
from tests.support.dlq import archive_dead_letters, dead_letter, drain
from tests.support.messages import email_send
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration

DLQ = PUSH_COMMANDS.dead_letter_queue


async def _two_dead_letters(broker: BrokerEnv, settings: Settings) -> tuple[list[Any], str]:
    """Two archived dead letters of push.commands.dlq with a reason no other test uses."""
    reason = f"reason-{uuid.uuid4().hex[:8]}"
    messages = [email_send(), email_send()]
    await dead_letter(broker, PUSH_COMMANDS, messages, reasons=(reason,))
    await archive_dead_letters(broker, settings.database_url)
    return messages, reason


async def test_only_admins_reach_the_dead_letters(client: httpx.AsyncClient) -> None:
    user = await register(client)
    paths = ("/admin/dlq", "/admin/dlq/summary", f"/admin/dlq/{DLQ}")

    for path in paths:
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=user["headers"])).status_code == 403
    replay = await client.post(f"/admin/dlq/{DLQ}/replay", json={}, headers=user["headers"])
    delete = await client.delete(f"/admin/dlq/{DLQ}/messages/x", headers=user["headers"])
    assert replay.status_code == delete.status_code == 403


async def test_admin_sees_depths_messages_and_a_summary(
    client: httpx.AsyncClient, broker: BrokerEnv, calendar_settings: Settings
) -> None:
    operator = await admin(client)
    messages, reason = await _two_dead_letters(broker, calendar_settings)

    listing = (await client.get("/admin/dlq", headers=operator["headers"])).json()
    page = await client.get(
        f"/admin/dlq/{DLQ}", params={"reason": reason, "limit": 1}, headers=operator["headers"]
    )
    rest = await client.get(
        f"/admin/dlq/{DLQ}",
        params={"reason": reason, "cursor": page.json()["next_cursor"]},
        headers=operator["headers"],
    )
    summary = (await client.get("/admin/dlq/summary", headers=operator["headers"])).json()

    queues = {q["name"]: q for q in listing["queues"]}
    assert queues[DLQ]["origin"] == PUSH_COMMANDS.name
    assert queues[DLQ]["messages"] >= 2
    assert page.status_code == 200
    (first,) = page.json()["items"]
    (second,) = rest.json()["items"]
    assert [first["message_id"], second["message_id"]] == [str(m.message_id) for m in messages]
    assert first["type"] == "email.send"
    assert first["headers"]["x-fault-reason"] == reason
    assert first["body"]["message_id"] == str(messages[0].message_id)
    assert first["original_queue"] == PUSH_COMMANDS.name
    assert rest.json()["next_cursor"] is None
    (group,) = [g for g in summary["groups"] if g["reason"] == reason]
    assert (group["queue"], group["type"], group["count"]) == (DLQ, "email.send", 2)
    assert group["exception_type"] == "RuntimeError"


async def test_admin_replays_dry_runs_and_deletes(
    client: httpx.AsyncClient, broker: BrokerEnv, calendar_settings: Settings
) -> None:
    operator = await admin(client)
    (kept, gone), reason = await _two_dead_letters(broker, calendar_settings)
    replay_url = f"/admin/dlq/{DLQ}/replay"

    dry = await client.post(
        replay_url, json={"reason": reason, "dry_run": True}, headers=operator["headers"]
    )
    real = await client.post(
        replay_url, json={"message_id": str(kept.message_id)}, headers=operator["headers"]
    )
    deleted = await client.delete(
        f"/admin/dlq/{DLQ}/messages/{gone.message_id}", headers=operator["headers"]
    )
    again = await client.delete(
        f"/admin/dlq/{DLQ}/messages/{gone.message_id}", headers=operator["headers"]
    )

    assert dry.json() == {"matched": 2, "replayed": 0}
    assert real.json() == {"matched": 1, "replayed": 1}
    assert deleted.status_code == 204
    assert again.status_code == 404
    arrived = await drain(broker, PUSH_COMMANDS.name, "push")
    assert str(kept.message_id) in {m.message_id for m in arrived}
    left = await client.get(
        f"/admin/dlq/{DLQ}", params={"reason": reason}, headers=operator["headers"]
    )
    assert left.json()["items"] == []


async def test_bad_requests_get_specific_answers(client: httpx.AsyncClient) -> None:
    operator = await admin(client)
    headers = operator["headers"]

    unknown = await client.get("/admin/dlq/no.such.dlq", headers=headers)
    too_many = await client.get(f"/admin/dlq/{DLQ}", params={"limit": 201}, headers=headers)
    cursor = await client.get(f"/admin/dlq/{DLQ}", params={"cursor": "nonsense"}, headers=headers)
    naive = await client.post(
        f"/admin/dlq/{DLQ}/replay", json={"since": "2030-01-01T00:00:00"}, headers=headers
    )
    nowhere = await client.post(
        f"/admin/dlq/{DLQ}/replay", json={"route": "elsewhere"}, headers=headers
    )

    assert unknown.status_code == 404
    assert too_many.status_code == 422
    assert cursor.status_code == 400
    assert naive.status_code == 422
    assert nowhere.status_code == 422
