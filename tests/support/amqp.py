"""Small AMQP helpers for tests: connect as a user, publish, wait for messages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from calendar_service.outbox import calendar_route
from shared.messaging.publisher import Publisher
from shared.schemas import Envelope
from tests.support.services import BrokerEnv


@asynccontextmanager
async def channel_as(url: str) -> AsyncIterator[AbstractChannel]:
    """A confirming channel on a connection of its own, closed afterwards."""
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish(
    channel: AbstractChannel,
    exchange: str,
    routing_key: str,
    body: bytes = b"{}",
    **properties: object,
) -> str:
    """Publish persistently with confirms; returns the message id used."""
    message_id = str(properties.pop("message_id", uuid.uuid4()))
    target = (
        channel.default_exchange
        if exchange == ""
        else await channel.get_exchange(exchange, ensure=False)
    )
    await target.publish(
        aio_pika.Message(
            body,
            message_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            **properties,  # type: ignore[arg-type]
        ),
        routing_key=routing_key,
    )
    return message_id


async def get_one(
    channel: AbstractChannel, queue: str, timeout: float = 15.0
) -> AbstractIncomingMessage | None:
    """Poll ``queue`` with basic.get until a message arrives or ``timeout`` passes.

    The default is for a message that should come; to show that none does,
    pass a short ``timeout`` of your own.
    """
    q = await channel.get_queue(queue, ensure=False)
    deadline = time.monotonic() + timeout
    while True:
        message = await q.get(no_ack=False, fail=False)
        if message is not None or time.monotonic() >= deadline:
            return message
        await asyncio.sleep(0.05)


async def publish_as_calendar(
    broker: BrokerEnv, message: Envelope[Any], *, headers: dict[str, Any] | None = None
) -> None:
    """Publish ``message`` as the calendar service does: events fan out, commands go direct."""
    route = calendar_route(message.type)
    async with channel_as(broker.amqp_url("calendar")) as channel:
        await Publisher(channel).publish(
            message, exchange=route.exchange, routing_key=route.routing_key, headers=headers
        )
