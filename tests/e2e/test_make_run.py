"""`make run` starts every process, serves RSVPs end to end, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import time
from functools import partial

import httpx
import pytest

from tests.support.api import PUSH_SUBSCRIPTIONS, create_event, register
from tests.support.polling import until
from tests.support.system import READY_TIMEOUT_S, RunningSystem

#: Room for the system's start (READY_TIMEOUT_S), the test's own waits and a clean stop.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

#: From an RSVP to its email or push, reported back: several processes on a loaded machine.
DELIVERY_TIMEOUT_S = 40


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

        [mail] = await system.mail.wait_for(1, timeout=DELIVERY_TIMEOUT_S)
        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
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

        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
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


async def answers_200(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


async def test_every_background_process_reports_ready(system: RunningSystem) -> None:
    # the API answering (the fixture) says nothing of the processes started beside it
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient() as client:
        processes = (
            (1, "relay"),
            (2, "reports"),
            (3, "email"),
            (4, "push"),
            (5, "scheduler"),
            (6, "deadletters"),
        )
        for offset, name in processes:
            url = f"http://127.0.0.1:{system.metrics_base + offset}"
            await until(
                partial(answers_200, client, f"{url}/readyz"),
                timeout=max(deadline - time.monotonic(), 0.0),
                interval=0.2,
                what=f"the {name} process to report ready",
            )
            assert b"# HELP" in (await client.get(f"{url}/metrics")).content


async def test_ctrl_c_stops_every_process_cleanly(system: RunningSystem) -> None:
    code = await system.stop()

    output = "".join(system.output)
    assert code == 0, output
    assert "all processes stopped" in output
    assert "exited with code" not in output  # nothing died on its own
    assert "Traceback" not in output  # each process drained once, none was cancelled
