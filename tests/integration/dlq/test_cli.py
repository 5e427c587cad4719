"""``rsvp-dlq`` as an operator runs it: a real process against the store and the live broker.

The dead letters are archived into the store first, as the archiver of ``make run`` does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from shared.messaging.topology import EMAIL_RSVP_EVENTS, PUSH_RSVP_EVENTS
from tests.support.dlq import archive_dead_letters, consumers, dead_letter, depth, drain
from tests.support.email_consumer import email_settings, running_email_consumer
from tests.support.messages import rsvp_created
from tests.support.polling import until
from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DLQ = EMAIL_RSVP_EVENTS.dead_letter_queue


@pytest.fixture(autouse=True)
def cli_database(database_url: str, store: asyncpg.Pool) -> None:
    """Every CLI run here works on the run's database, emptied of dead letters first."""
    os.environ["DATABASE_URL"] = database_url


async def start_cli(broker: BrokerEnv, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.dlq",
        *args,
        cwd=ROOT,
        env={**os.environ, "AMQP_URL": broker.amqp_url("ops"), "COLUMNS": "200"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(broker: BrokerEnv, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    process = await start_cli(broker, *args)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_list_and_show_print_tables(fresh_broker: BrokerEnv, database_url: str) -> None:
    message = rsvp_created()
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [message], reasons=("invalid_recipient",))
    await archive_dead_letters(fresh_broker, database_url)

    code, listing, _ = await run_cli(fresh_broker, "list")
    code_show, shown, _ = await run_cli(fresh_broker, "show", DLQ)
    code_json, as_json, _ = await run_cli(fresh_broker, "show", DLQ, "--json")

    assert code == code_show == code_json == 0
    assert DLQ in listing
    assert "│ 1" in listing.replace("  ", " ")
    assert str(message.message_id) in shown
    assert "invalid_recipient" in shown
    assert f'"message_id":"{message.message_id}"' in as_json


async def test_unknown_queue_and_refused_confirmation_change_nothing(
    fresh_broker: BrokerEnv,
) -> None:
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [rsvp_created()])

    unknown, _, _ = await run_cli(fresh_broker, "replay", "no.such.dlq", "--yes")
    process = await start_cli(fresh_broker, "purge", DLQ)
    await asyncio.wait_for(process.communicate(b"n\n"), 30)

    assert unknown == 2
    assert process.returncode == 1  # aborted at the prompt
    assert await depth(fresh_broker, DLQ, "ops") == 1


async def test_via_exchange_replays_through_the_original_fanout(
    fresh_broker: BrokerEnv, database_url: str
) -> None:
    message = rsvp_created()
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [message])
    await archive_dead_letters(fresh_broker, database_url)

    code, out, err = await run_cli(fresh_broker, "replay", DLQ, "--via-exchange", "--yes")

    assert code == 0, err
    assert "replayed 1" in out
    for queue, user in ((EMAIL_RSVP_EVENTS.name, "email"), (PUSH_RSVP_EVENTS.name, "push")):
        (copy,) = await drain(fresh_broker, queue, user)
        assert copy.message_id == str(message.message_id)


@pytest.mark.timeout(300)  # filling 10,000, the CLI's own 120 s, draining them back
async def test_replaying_10000_messages_shows_progress_and_loses_none(
    fresh_broker: BrokerEnv, database_url: str
) -> None:
    messages = [rsvp_created() for _ in range(10_000)]
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, messages)
    await archive_dead_letters(fresh_broker, database_url)

    code, out, err = await run_cli(fresh_broker, "replay", DLQ, "--yes", timeout=120)

    assert code == 0, err
    assert "10000/10000" in err  # the progress bar's last frame
    assert "replayed 10000" in out
    replayed = await drain(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")
    assert {m.message_id for m in replayed} == {str(m.message_id) for m in messages}
    assert len(replayed) == 10_000
    assert await depth(fresh_broker, DLQ, "ops") == 0


@pytest.mark.timeout(480)  # the sum of its waits below, with room for a loaded machine
async def test_killing_a_replay_midway_loses_nothing_and_sends_no_duplicate_email(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> None:
    messages = [rsvp_created() for _ in range(1_000)]
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, messages)
    await archive_dead_letters(fresh_broker, database_url)

    process = await start_cli(fresh_broker, "replay", DLQ, "--yes", "--rate", "400")
    await _wait_for_depth(fresh_broker, EMAIL_RSVP_EVENTS.name, at_least=200)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    midway = await depth(fresh_broker, EMAIL_RSVP_EVENTS.name, "email")

    async def all_accounted_for() -> bool:
        # The killed client's transaction is rolled back when the server notices
        # its connection gone: until then its claimed rows are locked. Then every
        # message is dead in the store or has been published to its queue (some,
        # published but never marked, in both). The DLQ itself has no consumer.
        if await consumers(fresh_broker, DLQ, "ops"):
            return False
        dead = await store.fetchval("SELECT count(*) FROM dead_letters WHERE state = 'dead'")
        return dead + await depth(fresh_broker, EMAIL_RSVP_EVENTS.name, "email") >= 1_000

    await until(
        all_accounted_for,
        timeout=60,
        interval=0.1,
        what="the killed replay's deliveries back",
    )
    code, _, err = await run_cli(fresh_broker, "replay", DLQ, "--yes")

    assert 200 <= midway < 1_000  # killed mid-run, not after
    assert code == 0, err
    assert await depth(fresh_broker, DLQ, "ops") == 0
    with SmtpSink() as sink:
        settings = email_settings(fresh_broker, database_url, sink, smtp_pool_size=4)
        async with running_email_consumer(settings):
            await sink.wait_for(1_000, timeout=90)
            await _wait_for_depth(fresh_broker, EMAIL_RSVP_EVENTS.name, at_most=0)
        mails = sink.received
    sent_ids = sorted(mail.message["Message-ID"].split("@")[0].lstrip("<") for mail in mails)
    assert sent_ids == sorted(str(m.message_id) for m in messages)  # each exactly once


async def _wait_for_depth(
    broker: BrokerEnv,
    queue: str,
    *,
    at_least: int | None = None,
    at_most: int | None = None,
    timeout: float = 60,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        count = await depth(broker, queue, "email")
        if (at_least is None or count >= at_least) and (at_most is None or count <= at_most):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{queue} stayed at {count}")
        await asyncio.sleep(0.02)
