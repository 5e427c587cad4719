"""`make run` starts every process, serves RSVPs end to end, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.conftest import RunningSystem
from tests.support.api import PUSH_SUBSCRIPTIONS, create_event, register

pytestmark = pytest.mark.e2e


async def test_an_rsvp_sends_one_confirmation_email_and_reports_it_sent(
    system: RunningSystem,
) -> None:
    async with httpx.AsyncClient(base_url=system.api) as client:
        organizer, guest = await register(client), await register(client, name="Grace")
        event = await create_event(client, organizer, title="Launch party")
        response = await client.post(
            f"/events/{event['id']}/rsvps", json={"status": "going"}, headers=guest["headers"]
        )
        assert response.status_code == 201
        rsvp = response.json()

        [mail] = await system.mail.wait_for(1, timeout=20)
        async with asyncio.timeout(20):
            while True:
                read = await client.get(f"/rsvps/{rsvp['id']}", headers=guest["headers"])
                if read.json()["notifications"]["email"] == "sent":
                    break
                await asyncio.sleep(0.2)

    assert mail.rcpt_tos == (guest["email"],)
    assert "Launch party" in str(mail.message["Subject"])
    parts = [part.get_content_type() for part in mail.message.walk()]
    assert {"text/plain", "text/html", "text/calendar"} <= set(parts)


async def test_an_rsvp_sends_one_encrypted_push_and_reports_it_sent(
    system: RunningSystem,
) -> None:
    async with (
        httpx.AsyncClient(base_url=system.api) as client,
        httpx.AsyncClient(base_url=system.push_sink) as push_service,
    ):
        organizer, guest = await register(client), await register(client, name="Grace")
        # what the guest's browser got from pushManager.subscribe() at the dev push service
        browser = (await push_service.post("/subscriptions")).json()
        subscribed = await client.post(
            PUSH_SUBSCRIPTIONS,
            json={"endpoint": browser["endpoint"], "keys": browser["keys"]},
            headers=guest["headers"],
        )
        assert subscribed.status_code == 201, subscribed.text
        event = await create_event(client, organizer, title="Launch party")
        response = await client.post(
            f"/events/{event['id']}/rsvps", json={"status": "going"}, headers=guest["headers"]
        )
        assert response.status_code == 201
        rsvp = response.json()

        async with asyncio.timeout(20):
            while not (
                pushes := (
                    await push_service.get("/pushes", params={"subscription": browser["id"]})
                ).json()
            ):
                await asyncio.sleep(0.2)
            while True:
                read = await client.get(f"/rsvps/{rsvp['id']}", headers=guest["headers"])
                if read.json()["notifications"]["push"] == "sent":
                    break
                await asyncio.sleep(0.2)

    [push] = pushes  # decrypted by the push service with the browser's private key
    assert push["notification"]["title"] == "You're going to Launch party"
    assert push["notification"]["event_id"] == event["id"]
    assert push["notification"]["url"].endswith(f"/events/{event['id']}")


async def test_every_background_process_reports_ready(system: RunningSystem) -> None:
    async with httpx.AsyncClient() as client:
        # relay, follow-up consumer, email consumer, push consumer
        for offset in (1, 2, 3, 4):
            url = f"http://127.0.0.1:{system.metrics_base + offset}"
            assert (await client.get(f"{url}/readyz")).status_code == 200
            assert b"# HELP" in (await client.get(f"{url}/metrics")).content


async def test_ctrl_c_stops_every_process_cleanly(system: RunningSystem) -> None:
    code = await system.stop()

    output = "".join(system.output)
    assert code == 0, output
    assert "all processes stopped" in output
    assert "exited with code" not in output  # nothing died on its own
