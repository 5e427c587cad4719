"""The email consumer killed outright: nothing is lost, and poison is stopped by the broker.

These start real processes (``python -m email_consumer``, and a consumer whose
handler kills its process) against the test's own vhost, the run's database
and a real aiosmtpd server, and end them with SIGKILL or ``os._exit``: no
drain, no ack, no clean-up (design §6.3, §6.4).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.messaging.publisher import Publisher
from shared.messaging.topology import DELIVERY_LIMIT, EMAIL_RSVP_EVENTS, EVENTS_EXCHANGE
from tests.support.amqp import channel_as, get_one
from tests.support.crashing_consumer import CRASHED
from tests.support.dlq import depth
from tests.support.email_consumer import email_env, email_settings, publish_as_calendar
from tests.support.messages import rsvp_created
from tests.support.polling import until, wait_until, wait_until_stable
from tests.support.ports import free_port
from tests.support.processes import python_module, wait_ready
from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

MESSAGES = 300
INBOX_KEY = f"email/{EMAIL_RSVP_EVENTS.name}"


def message_ids_of(sink: SmtpSink) -> list[str]:
    return [str(mail.message["Message-ID"]) for mail in sink.received]


async def in_flight(metrics_port: int) -> float:
    """Messages the consumer process at ``metrics_port`` is handling, from its /metrics."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{metrics_port}/metrics")
    response.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "messages_in_flight"
    )


@pytest.mark.timeout(300)  # two process starts and 300 mails, on a loaded machine
async def test_a_consumer_killed_mid_batch_loses_nothing_once_restarted(
    fresh_broker: BrokerEnv, database_url: str, tmp_path: Path
) -> None:
    messages = [rsvp_created() for _ in range(MESSAGES)]
    message_ids = [m.message_id for m in messages]
    expected = {f"<{m.message_id}@rsvp.localhost>" for m in messages}
    async with channel_as(fresh_broker.amqp_url("calendar")) as channel:
        publisher = Publisher(channel)
        await asyncio.gather(
            *(publisher.publish(m, exchange=EVENTS_EXCHANGE, routing_key="") for m in messages)
        )
    log, metrics_port = tmp_path / "email_consumer.log", free_port()

    with SmtpSink() as sink:
        settings = email_settings(fresh_broker, database_url, sink, metrics_port=metrics_port)
        env = {**email_env(settings), "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"}
        async with python_module("email_consumer", env, log) as first:
            await wait_ready(first, metrics_port, log)
            await wait_until(lambda: len(sink.received) >= MESSAGES // 4, timeout=30, what="mail")
            first.kill()  # SIGKILL: unacked deliveries and sends in flight die with it
            killed_at = datetime.now(UTC)
            assert await first.wait() == -signal.SIGKILL
        # a mail the killed process had sent whole may still be on its way into the sink
        before_restart = await wait_until_stable(
            lambda: len(sink.received), quiet=0.5, what="the mails of the killed consumer"
        )

        async def settled() -> bool:
            # nothing waiting, nothing in the consumer's hands (a redelivered copy of a
            # mail already sent included), and every message recorded as handled
            return (
                await depth(fresh_broker, EMAIL_RSVP_EVENTS.name, "email") == 0
                and await in_flight(metrics_port) == 0
                and len(await handled_at(database_url, message_ids)) == MESSAGES
            )

        async with python_module("email_consumer", env, log) as second:
            await wait_ready(second, metrics_port, log)
            await wait_until(
                lambda: set(message_ids_of(sink)) >= expected, timeout=90, what="every mail"
            )
            # a SIGTERM now would give back what is still queued or prefetched
            await until(settled, timeout=60, interval=0.1, hold=0.5, what="the queue to settle")
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), 20) == 0, log.read_text()

    received = message_ids_of(sink)
    assert before_restart < MESSAGES  # killed mid-batch, not after it
    assert set(received) == expected  # nothing lost, nothing foreign
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        assert await get_one(email, EMAIL_RSVP_EVENTS.name, timeout=0.3) is None
    async with channel_as(fresh_broker.amqp_url("ops")) as ops:
        assert await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue, timeout=0.3) is None
    recorded = await handled_at(database_url, message_ids)
    assert len(recorded) == MESSAGES
    # What the code promises (email_consumer.handler, shared.messaging.inbox): a
    # message recorded in the inbox is never sent again; the record commits
    # after the SMTP server accepted the mail, so a kill between the two sends
    # that one mail twice. Each duplicate must be such a mail: first accepted
    # before the kill, recorded only by the restarted process, and there can be
    # no more of them than handlers running at once. (Runs here see 0 to 3.)
    duplicated = [mid for mid, copies in Counter(received).items() if copies > 1]
    assert len(received) - len(expected) == len(duplicated)  # twice at most, never thrice
    assert len(duplicated) <= settings.concurrency
    for message_id in duplicated:
        assert received.index(message_id) < before_restart
        assert recorded[message_id] > killed_at


async def handled_at(database_url: str, message_ids: list[Any]) -> dict[str, datetime]:
    """When the inbox recorded each message, keyed by the Message-ID of its mail."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch(
            "SELECT message_id, handled_at FROM consumer_inbox"
            " WHERE consumer = $1 AND message_id = ANY($2::uuid[])",
            INBOX_KEY,
            message_ids,
        )
    finally:
        await connection.close()
    return {f"<{row['message_id']}@rsvp.localhost>": row["handled_at"] for row in rows}


@pytest.mark.timeout(300)  # up to DELIVERY_LIMIT + 3 process starts on a loaded machine
async def test_a_poison_message_is_dead_lettered_by_the_quorum_delivery_limit(
    fresh_broker: BrokerEnv, database_url: str, tmp_path: Path
) -> None:
    poison = rsvp_created()
    await publish_as_calendar(fresh_broker, poison)
    log = tmp_path / "crashing_consumer.log"
    dsn = database_url.replace("postgresql+asyncpg", "postgresql")
    # idle from the moment it consumes: a redelivery that does come arrives well within it
    args = (fresh_broker.amqp_url("email"), dsn, "--idle-exit", "5")
    exits = []

    started = time.monotonic()
    for _ in range(DELIVERY_LIMIT + 3):  # bounded: a broker that never gives up fails the test
        async with python_module("tests.support.crashing_consumer", {}, log, *args) as process:
            exits.append(await asyncio.wait_for(process.wait(), 60))
        if exits[-1] != CRASHED:
            break
    async with channel_as(fresh_broker.amqp_url("ops")) as ops:
        dead = await get_one(ops, EMAIL_RSVP_EVENTS.dead_letter_queue)

    # the first delivery and DELIVERY_LIMIT redeliveries crash it; then the broker stops
    assert exits == [CRASHED] * (DELIVERY_LIMIT + 1) + [0], log.read_text()
    assert time.monotonic() - started < 180  # a few process starts, not a broker that loops on
    assert dead is not None
    assert dead.message_id == str(poison.message_id)
    assert dead.body == poison.model_dump_json().encode()
    (death,) = dead.headers["x-death"]
    assert death["reason"] == "delivery_limit"
    assert death["queue"] == EMAIL_RSVP_EVENTS.name
    assert death["exchange"] == EVENTS_EXCHANGE
    assert "x-fault-reason" not in dead.headers  # the broker dead-lettered it, not the runtime
