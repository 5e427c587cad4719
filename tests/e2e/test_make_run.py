"""`make run` starts every process, serves RSVPs end to end, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.messaging.topology import EMAIL_RSVP_EVENTS
from tests.e2e.conftest import RunningSystem
from tests.support.amqp import channel_as, get_one
from tests.support.api import create_event, register
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.e2e


async def test_an_rsvp_made_through_the_running_system_is_published(
    system: RunningSystem, broker: BrokerEnv
) -> None:
    async with httpx.AsyncClient(base_url=system.api) as client:
        organizer, guest = await register(client), await register(client)
        event = await create_event(client, organizer)
        response = await client.post(
            f"/events/{event['id']}/rsvps", json={"status": "going"}, headers=guest["headers"]
        )
    assert response.status_code == 201

    async with channel_as(broker.amqp_url("email")) as channel:
        found = False
        async with asyncio.timeout(15):
            while not found:
                message = await get_one(channel, EMAIL_RSVP_EVENTS.name, timeout=5)
                assert message is not None, "the relay published nothing"
                await message.ack()
                found = response.json()["id"] in message.body.decode()
    assert found


async def test_every_background_process_reports_ready(system: RunningSystem) -> None:
    async with httpx.AsyncClient() as client:
        for offset in (1, 2):  # relay, follow-up consumer
            url = f"http://127.0.0.1:{system.metrics_base + offset}"
            assert (await client.get(f"{url}/readyz")).status_code == 200
            assert b"# HELP" in (await client.get(f"{url}/metrics")).content


async def test_ctrl_c_stops_every_process_cleanly(system: RunningSystem) -> None:
    code = await system.stop()

    output = "".join(system.output)
    assert code == 0, output
    assert "all processes stopped" in output
    assert "exited with code" not in output  # nothing died on its own
