"""A process given several broker nodes moves to the next when the one it is on goes away.

The "nodes" are two cuttable loopback proxies in front of the one real
broker: cutting the first is, for the client, the node it was on going away.
(`make test-cluster` does the same with a real three-node cluster.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiormq
import pytest

from shared.management import ManagementClient, ManagementError
from shared.messaging.topology import EMAIL_RSVP_EVENTS, EVENTS_EXCHANGE
from shared.service.broker import FailoverConnection, connect_broker
from tests.support.amqp import channel_as, get_one, publish
from tests.support.ports import free_port
from tests.support.proxy import CuttableProxy
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


@pytest.fixture
async def two_nodes(fresh_broker: BrokerEnv) -> AsyncIterator[tuple[CuttableProxy, CuttableProxy]]:
    first, second = (
        CuttableProxy("127.0.0.1", fresh_broker.port),
        CuttableProxy("127.0.0.1", fresh_broker.port),
    )
    await first.start()
    await second.start()
    yield first, second
    await first.cut()
    await second.cut()


def through(proxy: CuttableProxy, broker: BrokerEnv, user: str) -> str:
    return broker.amqp_url(user).replace(f":{broker.port}/", f":{proxy.port}/")


async def test_a_connection_whose_node_goes_away_goes_on_through_the_next_node(
    fresh_broker: BrokerEnv, two_nodes: tuple[CuttableProxy, CuttableProxy]
) -> None:
    first, second = two_nodes
    nodes = ",".join(through(proxy, fresh_broker, "calendar") for proxy in two_nodes)
    connection = await connect_broker(nodes, "failover-test")
    assert isinstance(connection, FailoverConnection)
    try:
        assert connection.url.port == first.port
        channel = await connection.channel(publisher_confirms=True)
        await publish(channel, EVENTS_EXCHANGE, "", b'{"n": 1}', message_id="before")

        await first.cut()  # the node the process is on goes away for good
        async with asyncio.timeout(20):
            while not (connection.connected.is_set() and connection.url.port == second.port):
                await asyncio.sleep(0.05)
            # the same robust channel, restored by aio-pika on the next node (its
            # restoration may trail the connection's by a moment: nothing is sent until then)
            while True:
                try:
                    await publish(channel, EVENTS_EXCHANGE, "", b'{"n": 2}', message_id="after")
                    break
                except aiormq.exceptions.ChannelInvalidStateError:
                    await asyncio.sleep(0.05)
    finally:
        await connection.close()

    async with channel_as(fresh_broker.amqp_url("email")) as email:
        taken = [await get_one(email, EMAIL_RSVP_EVENTS.name) for _ in range(2)]
    assert [m.message_id for m in taken if m is not None] == ["before", "after"]


async def test_management_calls_go_to_the_first_node_that_answers(
    fresh_broker: BrokerEnv,
) -> None:
    away = f"http://ops:ops@127.0.0.1:{free_port()}"
    async with ManagementClient(f"{away},{fresh_broker.admin_url}", timeout=5) as admin:
        queue = await admin.queue(fresh_broker.vhost, EMAIL_RSVP_EVENTS.name)
    assert queue["name"] == EMAIL_RSVP_EVENTS.name


async def test_management_calls_fail_when_no_node_answers() -> None:
    nodes = ",".join(f"http://ops:ops@127.0.0.1:{free_port()}" for _ in range(2))
    async with ManagementClient(nodes, timeout=2) as admin:
        with pytest.raises(ManagementError, match="unreachable"):
            await admin.overview()
