"""The /admin page as an operator uses it: headless Chromium against a real uvicorn server.

Debian's chromium (``make browser`` installs it) driven by playwright; the
screenshots land in ``tests/artifacts/``. The dead letters are archived into
the store first, as the archiver of ``make run`` does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Dialog, Page, async_playwright, expect

from calendar_service.app import create_app
from calendar_service.config import Settings
from shared.messaging.topology import EMAIL_COMMANDS, PUSH_COMMANDS
from tests.support.api import SUITE_LIMITS
from tests.support.dlq import archive_dead_letters, dead_letter, drain
from tests.support.messages import email_send
from tests.support.ports import free_port
from tests.support.services import BrokerEnv, as_role

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ADMIN = "page-admin@example.com"
PASSWORD = "correct horse"
DLQ = PUSH_COMMANDS.dead_letter_queue
#: For each expect() of the page: its 5 s default is tight for Chromium on a loaded machine.
#: (A page's own actions and navigations already wait up to 30 s by default.)
UI_TIMEOUT_MS = 20_000

expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.fixture
async def api_server(database_url: str, broker: BrokerEnv) -> AsyncIterator[str]:
    settings = Settings(
        app_env="test",
        database_url=as_role(database_url, "rsvp_api"),  # the API's own role, as in production
        amqp_url=broker.amqp_url("calendar"),
        admin_amqp_url=broker.amqp_url("dlq-admin"),
        admin_emails=frozenset({ADMIN}),
        db_pool_size=3,
        # the limit counters live in the shared Redis: runs from 127.0.0.1 add up
        **SUITE_LIMITS,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.post(
            "/auth/register", json={"email": ADMIN, "password": PASSWORD, "name": "Operator"}
        )
        assert response.status_code in (201, 409)
    try:
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_operator_signs_in_reads_a_dead_letter_replays_one_and_deletes_one(
    api_server: str, broker: BrokerEnv, database_url: str
) -> None:
    reason = f"page-{uuid.uuid4().hex[:6]}"
    replayed, deleted = email_send(), email_send()
    await dead_letter(broker, PUSH_COMMANDS, [replayed, deleted], reasons=(reason,))
    await archive_dead_letters(broker, database_url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            confirmations: list[str] = []

            async def accept(dialog: Dialog) -> None:
                confirmations.append(dialog.message)
                await dialog.accept()

            page.on("dialog", accept)
            await _sign_in(page, api_server)

            await expect(page.locator("#queues")).to_contain_text(DLQ)
            await expect(page.locator("#summary")).to_contain_text(reason)
            await page.get_by_role("link", name=DLQ).click()
            rows = page.locator("#messages tbody tr", has_text=reason)
            await expect(rows).to_have_count(2)

            await page.get_by_role("link", name=str(replayed.message_id)).click()
            await expect(page.locator("#detail-headers")).to_contain_text(reason)
            await expect(page.locator("#detail-body")).to_contain_text("email.send")
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "admin_page_message.png", full_page=True)
            await page.get_by_role("button", name="Close").click()

            await (
                rows.filter(has_text=str(replayed.message_id))
                .get_by_role("button", name="Replay")
                .click()
            )
            await expect(page.locator("#status")).to_contain_text("Replayed 1")
            await expect(rows).to_have_count(1)  # the page refreshed after the replay
            await (
                rows.filter(has_text=str(deleted.message_id))
                .get_by_role("button", name="Delete")
                .click()
            )
            await expect(page.locator("#status")).to_contain_text("Deleted")
            await expect(rows).to_have_count(0)
            await page.screenshot(path=ARTIFACTS / "admin_page.png", full_page=True)
        finally:
            await browser.close()

    assert len(confirmations) == 2  # each action asked first
    assert "Replay message" in confirmations[0]
    assert "Delete message" in confirmations[1]
    arrived = {m.message_id for m in await drain(broker, PUSH_COMMANDS.name, "push")}
    assert str(replayed.message_id) in arrived
    assert str(deleted.message_id) not in arrived
    assert (ARTIFACTS / "admin_page.png").stat().st_size > 10_000


async def test_operator_replays_a_failure_group_and_finds_it_in_the_audit_log(
    api_server: str, broker: BrokerEnv, database_url: str
) -> None:
    reason = f"group-{uuid.uuid4().hex[:6]}"
    messages = [email_send() for _ in range(3)]
    await dead_letter(broker, EMAIL_COMMANDS, messages, reasons=(reason,))
    await archive_dead_letters(broker, database_url)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda dialog: dialog.accept())
            await _sign_in(page, api_server)

            group = page.locator("#summary tbody tr", has_text=reason)
            await expect(group).to_have_count(1)
            await expect(group).to_contain_text("3")  # three messages, one failure
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "admin_page_groups.png", full_page=True)

            await group.get_by_role("button", name="Replay group").click()
            await expect(page.locator("#status")).to_contain_text("Replayed 3")
            await expect(group).to_have_count(0)
            await expect(page.locator("#replays tbody tr").first).to_contain_text("done")
            await page.screenshot(path=ARTIFACTS / "admin_page_replayed.png", full_page=True)

            await page.get_by_role("tab", name="Audit log").click()
            entry = page.locator("#audit tbody tr").first
            await expect(entry).to_contain_text("replay")
            await expect(entry).to_contain_text(ADMIN)
            await page.screenshot(path=ARTIFACTS / "admin_page_audit.png", full_page=True)
        finally:
            await browser.close()

    arrived = {m.message_id for m in await drain(broker, EMAIL_COMMANDS.name, "email")}
    assert {str(m.message_id) for m in messages} <= arrived


async def _sign_in(page: Page, base: str) -> None:
    await page.goto(f"{base}/admin")
    await page.get_by_label("Email").fill(ADMIN)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
