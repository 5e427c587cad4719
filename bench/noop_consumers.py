"""``python -m bench.noop_consumers KIND N AMQP_URL DATABASE_URL``: drain N messages, do nothing.

``runtime``: the shared consumer runtime with a handler that returns no
follow-ups, so what is timed is the messaging layer itself (parse, inbox
claim and record in PostgreSQL, ack). ``aio-pika``: the bare aio-pika
consumer it is compared with (prefetch 64, ack each message). Both time the
first to the N-th message handled, on uvloop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

import aio_pika
import asyncpg
import uvloop
from aio_pika.abc import AbstractIncomingMessage

from bench.worker import Clock, say
from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import EMAIL_RSVP_EVENTS
from shared.schemas import Envelope, RsvpMessage

PREFETCH = 64


async def drain_with_runtime(messages: int, amqp_url: str, database_url: str) -> Clock:
    clock, finished = Clock(), asyncio.Event()

    async def do_nothing(message: Envelope[Any]) -> Sequence[Envelope[Any]]:
        clock.tick()
        if clock.count >= messages:
            finished.set()
        return ()

    async with asyncpg.create_pool(database_url, min_size=2, max_size=18) as pool:
        runtime = ConsumerRuntime(
            "bench", amqp_url, inbox=PostgresInbox(pool), producer="bench", prefetch=PREFETCH
        )
        runtime.subscribe(EMAIL_RSVP_EVENTS, do_nothing, accepts=RsvpMessage)
        task = asyncio.create_task(runtime.run())
        await finished.wait()
        runtime.stop()
        await task
    return clock


async def drain_with_aio_pika(messages: int, amqp_url: str) -> Clock:
    clock, finished = Clock(), asyncio.Event()

    async def ack(message: AbstractIncomingMessage) -> None:
        await message.ack()
        clock.tick()
        if clock.count >= messages:
            finished.set()

    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(EMAIL_RSVP_EVENTS.name, passive=True)
        await queue.consume(ack)
        await finished.wait()
    return clock


async def main(kind: str, messages: int, amqp_url: str, database_url: str) -> None:
    if kind == "runtime":
        clock = await drain_with_runtime(messages, amqp_url, database_url)
    else:
        clock = await drain_with_aio_pika(messages, amqp_url)
    say(result=clock.result())


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
