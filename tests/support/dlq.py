"""Dead letters for tests: fill a DLQ as the runtime would, archive them, read queues back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika

from calendar_service.deadletters.archiver import ArchiverService, ArchiverSettings, bootstrap
from shared.messaging import faults
from shared.messaging.codec import envelope_to_amqp
from shared.messaging.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    WorkQueue,
    dead_letter_queues,
)
from shared.schemas import Envelope
from tests.support.amqp import channel_as
from tests.support.polling import until
from tests.support.services import BrokerEnv, as_role

#: Publishes in flight while filling: enough to fill 10,000 in a couple of seconds.
FILL_WINDOW = 500


async def dead_letter(
    broker: BrokerEnv,
    queue: WorkQueue,
    messages: Sequence[Envelope[Any]],
    *,
    reasons: Sequence[str] = ("invalid_recipient",),
    failed_at: datetime | None = None,
    origin: faults.SourceRoute = faults.SourceRoute(EVENTS_EXCHANGE, ""),
) -> None:
    """Put ``messages`` into ``queue``'s DLQ in order, with the runtime's fault headers.

    Message ``i`` gets ``reasons[i % len(reasons)]``. Published as the
    queue's own consumer user, through ``dlx``, exactly as the runtime does.
    """
    async with channel_as(broker.amqp_url(queue.owner)) as channel:
        dlx = await channel.get_exchange(DEAD_LETTER_EXCHANGE, ensure=False)
        slots = asyncio.Semaphore(FILL_WINDOW)

        async def publish(index: int, envelope: Envelope[Any]) -> None:
            try:
                headers = faults.fault_headers(
                    {},
                    reason=reasons[index % len(reasons)],
                    error=RuntimeError(f"failure {index}"),
                    attempts=1,
                    route=origin,
                    queue=queue.name,
                    failed_at=failed_at or datetime.now(UTC),
                )
                await dlx.publish(envelope_to_amqp(envelope, headers=headers), queue.name)
            finally:
                slots.release()

        tasks = []
        for index, envelope in enumerate(messages):
            await slots.acquire()  # FIFO: publishes leave in list order
            tasks.append(asyncio.create_task(publish(index, envelope)))
        await asyncio.gather(*tasks)


async def drain(broker: BrokerEnv, queue: str, user: str) -> list[aio_pika.IncomingMessage]:
    """Take every message present in ``queue`` (acked), in queue order."""
    async with channel_as(broker.amqp_url(user)) as channel:
        await channel.set_qos(prefetch_count=1000)
        source = await channel.declare_queue(queue, passive=True)
        expected = source.declaration_result.message_count or 0
        taken: list[aio_pika.IncomingMessage] = []
        if expected == 0:
            return taken
        done = asyncio.Event()

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            taken.append(message)  # type: ignore[arg-type]
            if len(taken) >= expected:
                done.set()

        tag = await source.consume(take, no_ack=True)
        await asyncio.wait_for(done.wait(), 60)
        await source.cancel(tag)
    return taken


async def depth(broker: BrokerEnv, queue: str, user: str) -> int:
    async with channel_as(broker.amqp_url(user)) as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def consumers(broker: BrokerEnv, queue: str, user: str) -> int:
    """Consumers the queue has now, as it answers a passive declare.

    A quorum queue drops a dead client's consumer and takes back that
    consumer's unacked deliveries in one step, so 0 here means none of them
    is still out: they are all counted in :func:`depth` again.
    """
    async with channel_as(broker.amqp_url(user)) as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.consumer_count or 0


def archiver_settings(broker: BrokerEnv, database_url: str, **overrides: Any) -> ArchiverSettings:
    """The archiver's settings for this vhost and database (as ``ops``, like the real one)."""
    values: dict[str, Any] = {
        "app_env": "test",
        "database_url": as_role(database_url, "rsvp_archiver"),
        # it reads the DLQs as RABBITMQ_MANAGEMENT_URL's user (ops) on this vhost
        "amqp_url": broker.amqp_url("calendar"),
        "metrics_port": None,
        **overrides,
    }
    return ArchiverSettings(**values)


@asynccontextmanager
async def running_archiver(settings: ArchiverSettings) -> AsyncIterator[ArchiverService]:
    """The archiver of ``python -m calendar_service.deadletters`` until the block ends."""
    stop = asyncio.Event()
    async with bootstrap(settings) as service:
        task = asyncio.create_task(service.run(stop))
        try:
            yield service
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def archive_dead_letters(
    broker: BrokerEnv, database_url: str, *, timeout: float = 60
) -> None:
    """Run the archiver until every DLQ of the vhost is empty: what ``make run``'s does."""
    async with running_archiver(archiver_settings(broker, database_url)) as archiver:

        async def left() -> int:
            depths = [await depth(broker, queue, "ops") for queue in dead_letter_queues()]
            return sum(depths) + archiver.waiting

        # held a moment: a delivery on its way to the archiver is in neither count
        await until(left, lambda n: n == 0, timeout=timeout, hold=0.3, what="every DLQ archived")
