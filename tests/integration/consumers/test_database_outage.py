"""The email consumer while PostgreSQL (its inbox) is away: messages wait, tiers stay unused.

The consumer reaches PostgreSQL through a loopback TCP proxy that the test
cuts (every connection dropped, new ones refused) and restores, as a stopped
or restarting database server looks from the consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import EMAIL_RSVP_EVENTS
from tests.support.email_consumer import email_settings, publish_as_calendar, running_email_consumer
from tests.support.messages import rsvp_created
from tests.support.proxy import CuttableProxy, proxied
from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

QUEUE = EMAIL_RSVP_EVENTS.name


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[tuple[CuttableProxy, str]]:
    """A proxy to the run's database, and the URL through it."""
    async with proxied(database_url) as proxy_and_url:
        yield proxy_and_url


@pytest.fixture
def database_proxy(database: tuple[CuttableProxy, str]) -> CuttableProxy:
    return database[0]


@pytest.fixture
async def consumer(
    fresh_broker: BrokerEnv, database: tuple[CuttableProxy, str], sink: SmtpSink
) -> AsyncIterator[ConsumerRuntime]:
    settings = email_settings(fresh_broker, database[1], sink)
    async with running_email_consumer(settings) as runtime:
        yield runtime


def counted(runtime: ConsumerRuntime, metric: str) -> float:
    labels = {"consumer": "email", "queue": QUEUE}
    return runtime.metrics.registry.get_sample_value(metric, labels) or 0.0


async def test_with_the_inbox_away_messages_wait_and_are_sent_once_it_is_back(
    fresh_broker: BrokerEnv,
    consumer: ConsumerRuntime,
    database_proxy: CuttableProxy,
    sink: SmtpSink,
) -> None:
    await database_proxy.cut()
    messages = [rsvp_created() for _ in range(5)]
    for message in messages:
        await publish_as_calendar(fresh_broker, message)

    await asyncio.sleep(3.0)  # past the 1 s tier a failed attempt would have waited in
    assert sink.received == []
    assert counted(consumer, "messages_held_total") > 0

    await database_proxy.start()
    mails = await sink.wait_for(5, timeout=15)

    await asyncio.sleep(0.5)
    assert len(sink.received) == 5
    assert {m.message["Message-ID"] for m in mails} == {
        f"<{m.message_id}@rsvp.localhost>" for m in messages
    }
    assert counted(consumer, "messages_retried_total") == 0  # no retry tier used up
    assert counted(consumer, "messages_handled_total") == 5


async def test_an_inbox_record_that_fails_after_the_send_is_written_again_not_sent_again(
    fresh_broker: BrokerEnv,
    consumer: ConsumerRuntime,
    database_proxy: CuttableProxy,
    sink: SmtpSink,
) -> None:
    loop = asyncio.get_running_loop()
    # the database goes away while the mail server takes the mail: the record cannot be written
    sink.after_data = lambda mail: asyncio.run_coroutine_threadsafe(
        database_proxy.cut(), loop
    ).result(5)

    await publish_as_calendar(fresh_broker, rsvp_created())
    await sink.wait_for(1, timeout=10)
    sink.after_data = None
    await asyncio.sleep(2.0)
    await database_proxy.start()

    deadline = loop.time() + 15
    while counted(consumer, "messages_handled_total") < 1 and loop.time() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # a retry would come back from the 1 s tier by now
    assert counted(consumer, "messages_handled_total") == 1
    assert counted(consumer, "messages_retried_total") == 0
    assert len(sink.received) == 1
