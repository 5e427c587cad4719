"""The admin API over the dead-letter store (design §3: `/admin/dead-letters*`, `/admin/audit`)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from shared.messaging.topology import PUSH_COMMANDS
from tests.integration.dlq.stored import arrived, store_letters
from tests.support.api import admin, register
from tests.support.dlq import drain
from tests.support.messages import email_send
from tests.support.polling import until
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


async def _progress(client: httpx.AsyncClient, headers: dict[str, str], replay_id: str) -> Any:
    async def probe() -> Any:
        return (
            await client.get(f"/admin/dead-letters/replays/{replay_id}", headers=headers)
        ).json()

    return await until(probe, lambda p: p["state"] != "running", timeout=30, what="the replay")


async def test_only_admins_reach_the_store(client: httpx.AsyncClient) -> None:
    user = await register(client)
    paths = ("/admin/dead-letters", "/admin/dead-letters/groups", "/admin/audit")

    for path in paths:
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=user["headers"])).status_code == 403
    replay = await client.post("/admin/dead-letters/replay", json={}, headers=user["headers"])
    assert replay.status_code == 403


async def test_a_group_replay_answers_at_once_reports_progress_and_is_audited(
    client: httpx.AsyncClient, broker: BrokerEnv, store: asyncpg.Pool
) -> None:
    operator = await admin(client)
    headers = operator["headers"]
    letters = [arrived(PUSH_COMMANDS, email_send()) for _ in range(3)]
    await store_letters(store, letters)
    (group,) = (await client.get("/admin/dead-letters/groups", headers=headers)).json()["groups"]

    started = await client.post(
        "/admin/dead-letters/replay", json={"group": group["group"]}, headers=headers
    )
    progress = await _progress(client, headers, started.json()["replay_id"])
    replayed = await client.get(
        "/admin/dead-letters",
        params={"group": group["group"], "state": "replayed"},
        headers=headers,
    )
    audit = (await client.get("/admin/audit", headers=headers)).json()

    assert started.status_code == 202
    assert started.json()["matched"] == 3
    assert progress | {"state": "done", "replayed": 3, "failed_again": 0} == progress
    items = replayed.json()["items"]
    assert [i["message_id"] for i in items] == [a.letter.message_id for a in letters]
    assert {(i["state"], i["replay_count"], i["group"]) for i in items} == {
        ("replayed", 1, group["group"])
    }
    entry = audit["items"][0]
    assert (entry["actor"], entry["action"], entry["target"]) == (
        operator["email"],
        "replay",
        group["group"],
    )
    assert entry["detail"]["matched"] == 3
    assert entry["detail"]["stop_if_failing"] is True  # the default for a group
    arrived_ids = {m.message_id for m in await drain(broker, PUSH_COMMANDS.name, "push")}
    assert {a.letter.message_id for a in letters} <= arrived_ids


async def test_a_replay_can_be_cancelled_and_the_cancel_is_audited(
    client: httpx.AsyncClient, broker: BrokerEnv, store: asyncpg.Pool
) -> None:
    operator = await admin(client)
    headers = operator["headers"]
    await store_letters(store, [arrived(PUSH_COMMANDS, email_send()) for _ in range(30)])

    started = await client.post(
        "/admin/dead-letters/replay",
        json={"queue": PUSH_COMMANDS.dead_letter_queue, "rate": 5},
        headers=headers,
    )
    replay_id = started.json()["replay_id"]
    cancelled = await client.delete(f"/admin/dead-letters/replays/{replay_id}", headers=headers)
    progress = await _progress(client, headers, replay_id)
    audit = (await client.get("/admin/audit", headers=headers)).json()["items"]
    dead = await client.get(
        "/admin/dead-letters",
        params={"queue": PUSH_COMMANDS.dead_letter_queue, "state": "dead", "limit": 200},
        headers=headers,
    )

    assert cancelled.status_code == 200
    assert (progress["state"], progress["stopped_reason"]) == ("stopped", "cancelled")
    assert len(dead.json()["items"]) == 30 - progress["replayed"] > 0
    assert [e["action"] for e in audit[:2]] == ["cancel replay", "replay"]
    await drain(broker, PUSH_COMMANDS.name, "push")


async def test_rates_limits_cursors_and_states_are_checked_at_the_edge(
    client: httpx.AsyncClient, store: asyncpg.Pool
) -> None:
    headers = (await admin(client))["headers"]
    url = "/admin/dead-letters/replay"

    never_ending = await client.post(url, json={"rate": 5e-324}, headers=headers)
    zero_rate = await client.post(url, json={"rate": 0}, headers=headers)
    huge = await client.post(url, json={"limit": 10_000_000}, headers=headers)
    old_api = await client.post(
        f"/admin/dlq/{PUSH_COMMANDS.dead_letter_queue}/replay",
        json={"rate": 5e-324},
        headers=headers,
    )
    cursor = await client.get("/admin/dead-letters", params={"cursor": "x"}, headers=headers)
    state = await client.get("/admin/dead-letters", params={"state": "gone"}, headers=headers)
    unknown = await client.get(f"/admin/dead-letters/replays/{uuid.uuid4()}", headers=headers)
    dry = await client.post(url, json={"dry_run": True}, headers=headers)

    assert never_ending.status_code == zero_rate.status_code == huge.status_code == 422
    assert old_api.status_code == 422
    assert cursor.status_code == 400
    assert state.status_code == 422
    assert unknown.status_code == 404
    assert (dry.status_code, dry.json()["matched"]) == (202, 0)
