"""B6's baseline: the best plain confirmed publish this process can do, with the replay's window.

Both ways publish the very copies a replay sends (built beforehand, so no
database and no building is timed) to the same queue, persistent,
mandatory, with publisher confirms, never more than ``window`` unconfirmed:

* ``per_message``: aiormq's ``basic_publish``, one task per message in flight
  (what aio-pika's ``exchange.publish`` does underneath);
* ``batched``: :class:`~shared.messaging.batch_publisher.BatchPublisher`,
  ``workers`` batches of ``batch`` in flight, as a replay keeps them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import cast

import aio_pika
import aiormq

from shared.messaging.batch_publisher import BatchPublisher, OutgoingMessage


async def _raw_channel(url: str) -> tuple[aio_pika.abc.AbstractConnection, aiormq.Channel]:
    connection = await aio_pika.connect(url)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    return connection, cast(aiormq.Channel, await channel.get_underlay_channel())


async def per_message(
    url: str, sample: Sequence[OutgoingMessage], count: int, window: int
) -> float:
    """Seconds to publish ``count`` copies (cycling through ``sample``) one call each."""
    connection, channel = await _raw_channel(url)
    slots = asyncio.Semaphore(window)

    async def one(message: OutgoingMessage) -> None:
        try:
            confirmation = await channel.basic_publish(
                message.body,
                exchange=message.exchange,
                routing_key=message.routing_key,
                properties=message.properties,
                mandatory=True,
            )
            if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                raise RuntimeError(f"not confirmed: {confirmation!r}")
        finally:
            slots.release()

    try:
        started = time.perf_counter()
        tasks = []
        for index in range(count):
            await slots.acquire()
            tasks.append(asyncio.create_task(one(sample[index % len(sample)])))
        await asyncio.gather(*tasks)
        return time.perf_counter() - started
    finally:
        await connection.close()


async def batched(
    url: str, sample: Sequence[OutgoingMessage], count: int, *, batch: int, workers: int
) -> float:
    """Seconds to publish ``count`` copies in batches, ``workers`` batches in flight."""
    connection, channel = await _raw_channel(url)
    publisher = BatchPublisher(channel)
    batches = [
        [sample[i % len(sample)] for i in range(start, min(start + batch, count))]
        for start in range(0, count, batch)
    ]
    queue: asyncio.Queue[list[OutgoingMessage]] = asyncio.Queue()
    for each in batches:
        queue.put_nowait(each)

    async def worker() -> None:
        while not queue.empty():
            answers = await publisher.confirmed(await publisher.send(queue.get_nowait()))
            if not all(answers):
                raise RuntimeError("a copy was not confirmed")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return time.perf_counter() - started
    finally:
        await connection.close()
