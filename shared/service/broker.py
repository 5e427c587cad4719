"""Connect to RabbitMQ, one node or a cluster, waiting with back-off while it is away.

``AMQP_URL`` names one node or, comma-separated, every node of a cluster.
aio-pika's robust connection reconnects to the one URL it was given; the
:class:`FailoverConnection` here moves to the next node's URL each time a
connection is lost or an attempt fails, so a process follows the cluster
when the node it was on goes away. Every process connects through
:func:`connect_broker` (or :func:`open_broker_connection` where a caller
wants an error rather than a wait).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection, TimeoutType
from yarl import URL

from shared.service.backoff import Backoff, sleep_unless_stopped
from shared.settings import split_url_list

log = logging.getLogger(__name__)

#: Longest one connection attempt (TCP, AMQP handshake, opening the connection) may take.
CONNECT_TIMEOUT_S = 10.0

#: What a failed attempt to reach a node raises.
UNREACHABLE = (OSError, TimeoutError, aio_pika.exceptions.AMQPError)


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection over the nodes of a cluster, tried in turn.

    aio-pika calls ``_on_connection_close`` both when an open connection is
    lost and when an attempt to open one fails; either way the next attempt
    of its reconnect loop goes to the next node in the list. Channels,
    consumers and QoS are restored on the new node by aio-pika as usual.
    Options in a URL's query (``heartbeat``, ``reconnect_interval``…) are
    read from the URL it starts with: give every node the same.
    """

    def __init__(self, urls: Sequence[str], *, first: int = 0, **kwargs: Any) -> None:
        self.nodes = tuple(URL(url) for url in urls)
        self.node_index = first % len(self.nodes)
        super().__init__(self.nodes[self.node_index], **kwargs)

    def move_to_next_node(self) -> None:
        """Point the next (re)connect at the node after the current one."""
        lost = str(self)  # the password masked
        self.node_index = (self.node_index + 1) % len(self.nodes)
        self.url = self.nodes[self.node_index]
        log.info("left broker node %s; the next attempt goes to %s", lost, self)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not self.close_called and len(self.nodes) > 1:
            self.move_to_next_node()
        await super()._on_connection_close(closing)


async def open_broker_connection(
    url: str, name: str, *, timeout_s: TimeoutType = CONNECT_TIMEOUT_S, first: int = 0
) -> AbstractRobustConnection:
    """A robust connection named ``name`` to the first node of ``url`` that answers.

    The nodes are tried in turn from the ``first``; if none answers, the
    last one's error is raised.
    """
    nodes = split_url_list(url)
    for step in range(len(nodes)):
        connection = FailoverConnection(
            nodes, first=first + step, client_properties={"connection_name": name}
        )
        node = str(connection)  # the password masked
        try:
            await connection.connect(timeout=timeout_s)
        except UNREACHABLE as exc:
            await connection.close()
            if step == len(nodes) - 1:
                raise
            log.warning("broker node %s unreachable (%r), trying the next", node, exc)
            continue
        return connection
    raise AssertionError("unreachable: split_url_list never returns an empty tuple")


async def connect_broker(
    url: str,
    name: str,
    *,
    stop: asyncio.Event | None = None,
    backoff: Backoff | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> AbstractRobustConnection | None:
    """A robust connection named ``name`` (as the management UI shows it); None if stopped first.

    ``connect_robust`` reconnects by itself once connected, but its first
    connection must succeed: a process started during a broker outage waits
    here rather than crashing, and a drain asked for meanwhile ends the
    wait. Each round tries every node of ``url`` once; the back-off is
    between rounds. Each attempt is bounded by ``timeout_s``: a broker that
    accepts the TCP connection and then says nothing (a half-dead node, a
    black-holing proxy) is given up on, not waited for. Heartbeats (the
    server's proposal, 60 s by default) find a dead connection once it is open.
    """
    backoff = backoff or Backoff()
    while stop is None or not stop.is_set():
        try:
            return await open_broker_connection(url, name, timeout_s=timeout_s)
        except UNREACHABLE as exc:
            delay = backoff.next_delay()
            log.warning("broker unreachable, retrying in %.1fs: %r", delay, exc)
            await sleep_unless_stopped(delay, stop)
    return None
