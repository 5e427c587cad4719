"""One pass over a dead-letter queue: every message present is replayed, kept or dropped.

Why a pass rewrites the whole queue
-----------------------------------
Dead-letter queues are quorum queues, and a quorum queue has no way to take
a message out of the middle or to look without taking: a message given back
(``nack`` with requeue, a closed channel, the management UI's "get
messages") goes to the front or the back depending on how it was given back,
and past 32 at once in no particular order (measured on RabbitMQ 3.10). So a
pass never gives a message back. It counts the messages present (a passive
declare), takes exactly that many in order, and for each one publishes a
copy with publisher confirms before it acks the original:

* REPLAY: to its origin queue (or, with :attr:`ReplayTarget.EXCHANGE`, through its
  original exchange and routing key), with replay headers;
* KEEP: to the back of the same DLQ, unchanged;
* DROP: nowhere (the ack alone removes it).

After one full pass the kept messages are in the DLQ in their old order,
behind anything that was dead-lettered meanwhile. The cost is one publish
and one ack per message present, whatever the filter picks; the gain is
that nothing is lost at any point (a crash leaves at most duplicates, which
idempotent consumers absorb) and nothing is reordered by a clean pass.

To take exactly N messages and never one more (an extra delivery would have
to be given back, and a quorum queue gives back in its own order), the pass
consumes with a prefetch window ``W``: the broker never has more than ``W``
unacked deliveries out. Before the last ``W`` messages, the pass waits until
everything earlier is acked and the last ``W`` have arrived; the consumer
then has no credit left, nothing is in flight, and cancelling it returns
nothing. (Cancelling with credit left lets the broker give in-flight
deliveries back to the tail of the queue: measured, and why it is done so.)
Two passes over one queue at once would interleave (losing nothing, but
mixing the order): a :class:`DeadLetterOffice` runs one pass per queue at a
time and refuses a second (:class:`QueueBusy`). An exclusive consumer would
do this across processes, but quorum queues on RabbitMQ 3.10 do not refuse a
second consumer, so two CLI runs at once are not prevented.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
)

from shared.dlq.ratelimit import TokenBucket
from shared.dlq.selection import DELIVERY_COUNT, DeadLetter, read_dead_letter, replay_headers
from shared.messaging.codec import republished
from shared.messaging.publisher import CONFIRM_TIMEOUT_S, PublishNotConfirmed

#: Messages in flight at once (delivered and not yet acked, publishes unconfirmed).
DEFAULT_WINDOW = 500
#: Confirmed messages acked with one ``basic.ack(multiple=True)``.
ACK_BATCH = 64
#: A pass that receives nothing for this long gives up on the rest (someone else took them).
IDLE_TIMEOUT_S = 10.0


class Action(enum.Enum):
    REPLAY = "replay"
    KEEP = "keep"
    DROP = "drop"


Decide = Callable[[DeadLetter], Action]


class ReplayTarget(enum.Enum):
    """Where a replayed copy is published."""

    #: to the origin queue alone, through the default exchange (the default)
    QUEUE = "queue"
    #: back through the original exchange with the original routing key: a
    #: fanout exchange hands the copy to every bound queue again, and their
    #: idempotent consumers ack the ones they had already handled
    EXCHANGE = "exchange"


class QueueBusy(RuntimeError):
    """Another pass of the same office is working on this queue."""


@dataclass
class PassCounts:
    """What a pass has done so far; progress callbacks get the live object."""

    total: int  #: messages present when the pass began
    scanned: int = 0
    replayed: int = 0
    kept: int = 0
    dropped: int = 0


Progress = Callable[[PassCounts], None]


async def run_pass(
    connection: AbstractConnection,
    dead_letter_queue: str,
    decide: Decide,
    *,
    window: int = DEFAULT_WINDOW,
    rate: TokenBucket | None = None,
    on_progress: Progress | None = None,
    route: ReplayTarget = ReplayTarget.QUEUE,
) -> PassCounts:
    """Run one pass; returns what it did. Raises if a publish is not confirmed."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        return await _Pass(
            channel, dead_letter_queue, decide, window, rate, on_progress, route
        ).run()
    finally:
        # Anything still unacked (after an error) goes back to the queue here.
        with contextlib.suppress(Exception):
            await channel.close()


async def publish_confirmed(
    raw: aiormq.Channel, copy: aio_pika.Message, exchange: str, routing_key: str
) -> None:
    """Publish ``copy`` (mandatory) and wait for its confirm; raise if it is not confirmed.

    aiormq directly: it waits for the confirm, not for each frame's write,
    so hundreds of copies can be in flight from one task each.
    """
    confirmation = await raw.basic_publish(
        copy.body,
        exchange=exchange,
        routing_key=routing_key,
        properties=copy.properties,
        mandatory=True,
        wait=False,
        timeout=CONFIRM_TIMEOUT_S,
    )
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        route = f"{exchange or '(default)'} / {routing_key}"
        raise PublishNotConfirmed(f"{route}: not confirmed ({confirmation!r})")


@dataclass
class _InFlight:
    delivery_tag: int
    done: bool = False


class _Pass:
    def __init__(
        self,
        channel: AbstractChannel,
        dead_letter_queue: str,
        decide: Decide,
        window: int,
        rate: TokenBucket | None,
        on_progress: Progress | None,
        route: ReplayTarget,
    ) -> None:
        self._channel = channel
        self._route = route
        self._dlq = dead_letter_queue
        self._decide = decide
        self._window = max(window, 1)
        self._rate = rate
        self._on_progress = on_progress
        self._slots = asyncio.Semaphore(self._window)
        self._tasks: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._counts = PassCounts(total=0)
        self._deliveries: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._received = 0
        self._all_received = asyncio.Event()
        # acks go out in delivery order, many at once (multiple=True)
        self._in_flight: deque[_InFlight] = deque()
        self._ack_batch = max(1, min(ACK_BATCH, self._window // 4))
        self._ackable_tag = 0
        self._ackable = 0
        self._ack_lock = asyncio.Lock()

    async def run(self) -> PassCounts:
        queue = await self._channel.declare_queue(self._dlq, passive=True)
        total = queue.declaration_result.message_count or 0
        self._counts = PassCounts(total=total)
        if total == 0:
            return self._counts
        # the concrete aiormq channel: its publish takes ``wait=False``
        self._raw = cast(aiormq.Channel, await self._channel.get_underlay_channel())
        prefetch = min(self._window, total)
        await self._channel.set_qos(prefetch_count=prefetch)
        tag: str | None = await queue.consume(self._on_delivery)
        last_stretch = total - prefetch
        for position in range(total):
            if tag is not None and position == last_stretch:
                # Everything before the last stretch acked, and the last
                # ``prefetch`` messages received: the consumer has no credit
                # left, so nothing is in flight that a cancel would give back.
                await self._settled()
                await self._received_all()
                await queue.cancel(tag)
                tag = None
            if self._failure is not None:
                break
            try:
                message = await asyncio.wait_for(self._deliveries.get(), IDLE_TIMEOUT_S)
            except TimeoutError:
                break  # fewer messages than counted: another client took some
            await self._settle(message)
        await self._settled()
        if self._failure is not None:
            raise self._failure
        return self._counts

    async def _on_delivery(self, message: AbstractIncomingMessage) -> None:
        self._received += 1
        self._deliveries.put_nowait(message)
        if self._received >= self._counts.total:
            self._all_received.set()

    async def _received_all(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_received.wait(), IDLE_TIMEOUT_S)

    async def _settled(self) -> None:
        """Wait for every publish in flight, then ack all that were confirmed."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._ack_confirmed(flush=True)

    async def _settle(self, message: AbstractIncomingMessage) -> None:
        letter = read_dead_letter(
            message.headers,
            message_id=message.message_id,
            message_type=message.type,
            dead_letter_queue=self._dlq,
            body=message.body,
        )
        action = self._decide(letter)
        self._counts.scanned += 1
        entry = _InFlight(message.delivery_tag or 0)
        self._in_flight.append(entry)
        if action is Action.DROP:
            entry.done = True
            self._counts.dropped += 1
            self._report()
            await self._ack_confirmed()
            return
        if action is Action.REPLAY:
            if self._rate is not None:
                await self._rate.acquire()
            copy = republished(message, replay_headers(letter))
            if self._route is ReplayTarget.EXCHANGE:
                exchange, routing_key = letter.original_exchange, letter.original_routing_key
            else:
                exchange, routing_key = "", letter.original_queue
        else:
            headers = {k: v for k, v in message.headers.items() if k != DELIVERY_COUNT}
            copy = republished(message, headers)
            exchange, routing_key = "", self._dlq
        await self._slots.acquire()
        # Tasks reach the channel's publish lock in the order they are created
        # (nothing awaits before it), so copies are published in queue order.
        task = asyncio.create_task(self._publish(entry, copy, exchange, routing_key, action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(
        self,
        entry: _InFlight,
        copy: aio_pika.Message,
        exchange: str,
        routing_key: str,
        action: Action,
    ) -> None:
        try:
            await publish_confirmed(self._raw, copy, exchange, routing_key)
        except Exception as exc:
            # Never acked: the original stays in the DLQ. Stop taking more.
            self._failure = self._failure or exc
            return
        finally:
            self._slots.release()
        entry.done = True
        if action is Action.REPLAY:
            self._counts.replayed += 1
        else:
            self._counts.kept += 1
        self._report()
        await self._ack_confirmed()

    async def _ack_confirmed(self, *, flush: bool = False) -> None:
        """Ack the longest confirmed prefix, once it is a batch long (or when flushing).

        Decided without awaiting, then sent under a FIFO lock: acks leave in
        increasing delivery-tag order, as ``multiple=True`` needs.
        """
        while self._in_flight and self._in_flight[0].done:
            self._ackable_tag = self._in_flight.popleft().delivery_tag
            self._ackable += 1
        if self._ackable == 0 or (self._ackable < self._ack_batch and not flush):
            return
        tag, self._ackable = self._ackable_tag, 0
        async with self._ack_lock:
            await self._raw.basic_ack(tag, multiple=True)

    def _report(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self._counts)
