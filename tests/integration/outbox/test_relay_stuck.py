"""No stuck pipeline (issue 14 item 4): a row the broker keeps refusing is parked
and the rows behind it flow; a broker that is away is backed off from, NOTIFY or not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from calendar_service.relay import RelayOptions, RelayService, bootstrap
from shared.messaging.topology import COMMANDS_EXCHANGE, PUSH_RSVP_EVENTS
from tests.integration.outbox.test_relay import (
    drain,
    settings_for,
    write_messages,
    write_outbox,
)
from tests.support.messages import rsvp_created
from tests.support.polling import until
from tests.support.proxy import CuttableProxy
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


async def sql(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


@asynccontextmanager
async def running_relay(
    database_url: str, amqp_url: str, options: RelayOptions
) -> AsyncIterator[RelayService]:
    stop = asyncio.Event()
    async with bootstrap(settings_for(database_url, amqp_url), options=options) as service:
        task = asyncio.create_task(service.run(stop))
        try:
            await until(_ready(service), timeout=15, what="relay ready")
            yield service
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=10)


def _ready(service: RelayService) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return service.ready()

    return check


async def test_rows_the_broker_refuses_are_parked_and_later_rsvps_flow(
    relay_db: str, fresh_broker: BrokerEnv, caplog: pytest.LogCaptureFixture
) -> None:
    missing, unroutable = rsvp_created(), rsvp_created()
    await write_messages(relay_db, [missing, unroutable])
    await sql(
        relay_db,
        "UPDATE outbox SET exchange = 'no.such.exchange' WHERE message_id = $1",
        missing.message_id,
    )
    await sql(
        relay_db,
        "UPDATE outbox SET exchange = $2, routing_key = 'nowhere' WHERE message_id = $1",
        unroutable.message_id,
        COMMANDS_EXCHANGE,
    )
    options = RelayOptions(idle_poll_s=0.2, max_attempts=3, refusal_delay_s=0.05)
    caplog.set_level(logging.ERROR, logger="calendar_service.relay")
    async with running_relay(relay_db, fresh_broker.amqp_url("calendar"), options) as service:
        written = time.monotonic()
        later = await write_outbox(relay_db, 5)

        async def later_published() -> bool:
            rows = await sql(
                relay_db,
                "SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL",
            )
            return int(rows[0]["n"]) == len(later)

        await until(later_published, timeout=5, interval=0.02, what="later RSVPs published")
        latency = time.monotonic() - written

        async def both_parked() -> bool:
            rows = await sql(
                relay_db, "SELECT count(*) AS n FROM outbox WHERE parked_at IS NOT NULL"
            )
            return int(rows[0]["n"]) == 2

        await until(both_parked, timeout=15, interval=0.1, what="refused rows parked")
        parked_metric = service.relay_metrics.parked._value.get()

    assert latency < 1.0, f"later RSVPs waited {latency:.2f}s behind refused rows"
    parked = await sql(
        relay_db,
        "SELECT attempts, last_error, published_at FROM outbox WHERE parked_at IS NOT NULL",
    )
    assert all(r["attempts"] == 3 and r["published_at"] is None for r in parked)
    assert any("does not exist" in r["last_error"] for r in parked)
    assert parked_metric == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "parked" in r.message]
    assert len(errors) == 2
    assert set(await drain(fresh_broker, "push", PUSH_RSVP_EVENTS.name)) == set(later)


async def test_notifies_do_not_cut_the_back_off_while_the_broker_is_away(
    relay_db: str, fresh_broker: BrokerEnv, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = CuttableProxy(fresh_broker.host, fresh_broker.port)
    await proxy.start()
    url = fresh_broker.amqp_url("calendar").replace(f":{fresh_broker.port}/", f":{proxy.port}/")
    caplog.set_level(logging.WARNING, logger="calendar_service.relay")
    try:
        async with running_relay(relay_db, url, RelayOptions(idle_poll_s=0.5)):
            await proxy.cut()  # the broker goes away under the relay
            await asyncio.sleep(0.2)
            caplog.clear()
            for _ in range(50):  # 50 commits, each a NOTIFY, in about 2 s
                await write_outbox(relay_db, 1)
                await asyncio.sleep(0.04)
            failed_passes = [
                r
                for r in caplog.records
                if "not confirmed" in r.message or "relay pass failed" in r.message
            ]
    finally:
        await proxy.cut()

    assert len(failed_passes) <= 5, [r.message for r in failed_passes]
    rows = await sql(relay_db, "SELECT max(attempts) AS most FROM outbox")
    assert rows[0]["most"] == 0  # the broker never refused them: it was away
