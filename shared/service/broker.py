"""Connect to RabbitMQ, waiting with back-off while it is away.

``connect_robust`` reconnects by itself once connected, but its first
connection must succeed: a process started during a broker outage waits here
rather than crashing, and a drain asked for meanwhile ends the wait.
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from shared.service.backoff import Backoff, sleep_unless_stopped

log = logging.getLogger(__name__)

#: Longest one connection attempt (TCP, AMQP handshake, opening the connection) may take.
CONNECT_TIMEOUT_S = 10.0


async def connect_broker(
    url: str,
    name: str,
    *,
    stop: asyncio.Event | None = None,
    backoff: Backoff | None = None,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> AbstractRobustConnection | None:
    """A robust connection named ``name`` (as the management UI shows it); None if stopped first.

    Each attempt is bounded by ``timeout_s``: a broker that accepts the TCP
    connection and then says nothing (a half-dead node, a black-holing
    proxy) is given up on and retried with back-off, not waited for.
    Heartbeats (the server's proposal, 60 s by default) find a dead
    connection once it is open.
    """
    backoff = backoff or Backoff()
    while stop is None or not stop.is_set():
        try:
            return await aio_pika.connect_robust(
                url, client_properties={"connection_name": name}, timeout=timeout_s
            )
        except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as exc:
            delay = backoff.next_delay()
            log.warning("broker unreachable, retrying in %.1fs: %r", delay, exc)
            await sleep_unless_stopped(delay, stop)
    return None
