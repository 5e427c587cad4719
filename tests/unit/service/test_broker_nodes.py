"""``AMQP_URL`` as a list of cluster nodes: how it is read, and the order nodes are tried in.

The nodes here are loopback TCP servers that hang up on every AMQP
handshake, each recording when it was called: a broker node that is away,
seen from the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from calendar_service.config import Settings
from calendar_service.deadletters.archiver import ArchiverSettings
from shared.service.backoff import Backoff
from shared.service.broker import (
    UNREACHABLE,
    FailoverConnection,
    connect_broker,
    open_broker_connection,
)
from shared.settings import ServiceSettings, split_url_list

A = "amqp://calendar:calendar@10.0.0.1:5672/rsvp"
B = "amqp://calendar:calendar@10.0.0.2:5672/rsvp"
C = "amqp://calendar:calendar@10.0.0.3/rsvp"


def test_a_list_names_the_nodes_in_order_without_blanks() -> None:
    assert split_url_list(f" {A}, {B},,{C} ") == (A, B, C)


def test_one_url_is_a_list_of_one() -> None:
    assert split_url_list(A) == (A,)


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ValueError, match="no URL"):
        split_url_list(" , ")


def test_settings_accept_a_list_of_broker_and_management_urls() -> None:
    settings = ServiceSettings(
        amqp_url=f"{A} , {B}", rabbitmq_management_url="http://a:15672, http://b:15672"
    )
    assert settings.amqp_url == f"{A},{B}"
    assert settings.rabbitmq_management_url == "http://a:15672,http://b:15672"


def test_settings_refuse_a_list_with_a_url_that_is_not_amqp() -> None:
    with pytest.raises(ValidationError, match="the scheme must be amqp or amqps"):
        ServiceSettings(amqp_url=f"{A},http://calendar:calendar@10.0.0.2:15672")


def test_the_replay_account_is_used_on_every_node() -> None:
    settings = Settings(amqp_url=f"{A},{C}")

    assert settings.dead_letter_amqp_url == (
        "amqp://dlq-admin:dlq-admin@10.0.0.1:5672/rsvp,amqp://dlq-admin:dlq-admin@10.0.0.3/rsvp"
    )


def test_the_archiver_reads_as_the_operator_on_every_node() -> None:
    settings = ArchiverSettings(
        amqp_url=f"{A},{C}", rabbitmq_management_url="http://ops:s%40fe@10.0.0.9:15672"
    )

    assert settings.archiver_amqp_url == (
        "amqp://ops:s%40fe@10.0.0.1:5672/rsvp,amqp://ops:s%40fe@10.0.0.3/rsvp"
    )


class HangingUpNodes:
    """Loopback servers that accept a connection and close it at once; ``calls`` in order."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.ports: list[int] = []
        self._servers: list[asyncio.Server] = []

    async def start(self, count: int) -> None:
        for index in range(count):
            server = await asyncio.start_server(self._hang_up(index), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])

    def _hang_up(self, index: int):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.calls.append(index)
            writer.transport.abort()

        return handle

    @property
    def url(self) -> str:
        return ",".join(f"amqp://guest:guest@127.0.0.1:{port}/" for port in self.ports)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def nodes() -> AsyncIterator[HangingUpNodes]:
    servers = HangingUpNodes()
    await servers.start(3)
    yield servers
    await servers.close()


async def test_each_node_is_tried_once_in_list_order_before_giving_up(
    nodes: HangingUpNodes,
) -> None:
    with pytest.raises(UNREACHABLE):
        await open_broker_connection(nodes.url, "test", timeout_s=5)

    assert nodes.calls == [0, 1, 2]


async def test_the_round_starts_at_the_node_asked_for_and_wraps_around(
    nodes: HangingUpNodes,
) -> None:
    with pytest.raises(UNREACHABLE):
        await open_broker_connection(nodes.url, "test", timeout_s=5, first=2)

    assert nodes.calls == [2, 0, 1]


async def test_connect_broker_goes_round_the_nodes_again_after_a_back_off(
    nodes: HangingUpNodes,
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        connect_broker(nodes.url, "test", stop=stop, backoff=Backoff(first_s=0.05, max_s=0.05))
    )
    async with asyncio.timeout(10):
        while len(nodes.calls) < 7:
            await asyncio.sleep(0.01)
    stop.set()

    assert await task is None
    assert nodes.calls[:7] == [0, 1, 2, 0, 1, 2, 0]


async def test_a_lost_or_refused_connection_moves_the_next_attempt_to_the_next_node() -> None:
    connection = FailoverConnection([A, B, C], first=1)
    assert (connection.url.host, connection.node_index) == ("10.0.0.2", 1)

    moves = []
    for _ in range(3):
        connection.move_to_next_node()
        moves.append(connection.url.host)

    assert moves == ["10.0.0.3", "10.0.0.1", "10.0.0.2"]
    assert "calendar:calendar" not in str(connection)  # logs show no password
