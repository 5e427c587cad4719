"""The one consumer runtime that the email, push and follow-up consumers run on.

A consumer is a set of plain async handlers, one per work queue; the runtime
does everything else (design §6): connecting, prefetch, bounded concurrency,
idempotency, confirmed follow-ups, retry tiers, dead-lettering with fault
headers, metrics, health, and a graceful drain on SIGTERM.

Start-up and shut-down live in :meth:`ConsumerRuntime.run`, so every
connection, channel and server it opens is closed in the same place::

    runtime = ConsumerRuntime("email", settings.amqp_url, inbox=inbox, producer="email_consumer")
    runtime.subscribe(
        EMAIL_RSVP_EVENTS, handle_rsvp_event, accepts=RsvpMessage, on_dead_letter=email_failed
    )
    await runtime.run()  # until runtime.stop()

A process runs it through ``shared.service`` (``ConsumerService``), which
turns SIGTERM / SIGINT into :meth:`ConsumerRuntime.stop`.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import TYPE_CHECKING, Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from shared.messaging.acks import Acknowledger
from shared.messaging.batching import BatchHandler, HandlerBatcher
from shared.messaging.delivery import DeliveryProcessor
from shared.messaging.health import HealthServer
from shared.messaging.inbox import Inbox
from shared.messaging.metrics import RuntimeMetrics
from shared.messaging.publisher import Publisher
from shared.messaging.subscription import (
    DeadLetterFollowups,
    Handler,
    M,
    Subscription,
    message_classes,
)
from shared.messaging.topology import WorkQueue
from shared.service.broker import connect_broker
from shared.service.metrics import process_metrics

if TYPE_CHECKING:
    from typing_extensions import TypeForm

__all__ = ["BatchHandler", "ConsumerRuntime", "DeadLetterFollowups", "Handler"]

log = logging.getLogger(__name__)

#: How long in-flight handlers may run on after a stop before they are returned.
#: Below docker's default stop timeout (10 s), so SIGKILL never cuts a drain short.
GRACE_PERIOD_S = 8.0


class ConsumerRuntime:
    """Consumes work queues with plain async handlers, as one broker user.

    ``name`` labels metrics and prefixes the inbox key (``<name>/<queue>``),
    so it must stay the same across releases and replicas of one consumer;
    ``producer`` names the connection in the RabbitMQ management UI.
    ``prefetch`` bounds the deliveries held at once, ``concurrency`` the
    handlers running at once. ``metrics_port`` (0 picks a free one, None
    serves nothing) exposes ``/healthz``, ``/readyz`` and ``/metrics``.
    A runtime runs once: after :meth:`run` returns, build a new one.
    """

    def __init__(
        self,
        name: str,
        amqp_url: str,
        *,
        inbox: Inbox,
        producer: str,
        prefetch: int = 32,
        concurrency: int = 16,
        metrics_port: int | None = None,
        grace_period_s: float = GRACE_PERIOD_S,
    ) -> None:
        self.name = name
        self.producer = producer
        self.metrics = RuntimeMetrics()
        self._amqp_url = amqp_url
        self._inbox = inbox
        self._prefetch = prefetch
        self._grace_period_s = grace_period_s
        self._subscriptions: list[Subscription[Any]] = []
        self._slots = asyncio.Semaphore(concurrency)
        self._stop_requested = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._consuming = False
        self._draining = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._waiting: set[asyncio.Task[None]] = set()
        self._acks = Acknowledger()
        self.health: HealthServer | None = None
        if metrics_port is not None:
            self.health = HealthServer(
                ready=lambda: self.ready,
                metrics=lambda: self.metrics.exposition() + process_metrics(),
                port=metrics_port,
            )

    def subscribe(
        self,
        queue: WorkQueue,
        handler: Handler[M],
        *,
        accepts: TypeForm[M],
        on_dead_letter: DeadLetterFollowups[M] | None = None,
    ) -> None:
        """Consume ``queue`` with ``handler``; call before :meth:`run`.

        ``accepts`` is the handler's message class, or a union of them
        (``RsvpMessage``): only those reach the handler (and
        ``on_dead_letter``); any other valid message is dead-lettered with
        reason ``unexpected_type``.
        """
        consumer = f"{self.name}/{queue.name}"
        subscription = Subscription(
            queue, message_classes(accepts), handler, on_dead_letter, consumer
        )
        self._subscriptions.append(subscription)

    def subscribe_batch(
        self,
        queue: WorkQueue,
        handler: BatchHandler[M],
        *,
        accepts: TypeForm[M],
        max_batch: int = 64,
        max_wait_s: float = 0.003,
        on_dead_letter: DeadLetterFollowups[M] | None = None,
    ) -> HandlerBatcher[M]:
        """Consume ``queue`` with a handler of the messages that arrived together.

        Like :meth:`subscribe`, message by message, except that the accepted
        messages in flight at once (up to ``max_batch``, gathered for at
        most ``max_wait_s``) reach ``handler`` in one call; see
        ``shared.messaging.batching`` for what a failed batch does. Batches
        are as large as ``concurrency`` lets them be. Returns the batcher,
        which counts the batches.
        """
        batcher = HandlerBatcher(handler, max_batch=max_batch, max_wait_s=max_wait_s)
        self.subscribe(queue, batcher, accepts=accepts, on_dead_letter=on_dead_letter)
        return batcher

    @property
    def ready(self) -> bool:
        """Connected and consuming: what ``/readyz`` reports."""
        connection = self._connection
        return (
            self._consuming
            and connection is not None
            and not connection.is_closed
            and connection.connected.is_set()
        )

    def stop(self) -> None:
        """Ask :meth:`run` to stop consuming, drain and close; safe to call twice."""
        self._stop_requested.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`, then drain in-flight messages and close."""
        if not self._subscriptions:
            raise RuntimeError(f"runtime {self.name!r} has nothing to consume")
        if self.health is not None:
            await self.health.start()
        try:
            # waits out a broker outage at start-up; a stop meanwhile ends the wait
            self._connection = await connect_broker(
                self._amqp_url, f"{self.producer}/{self.name}", stop=self._stop_requested
            )
            if self._connection is not None:
                try:
                    await self._consume_until_stopped(self._connection)
                finally:
                    self._consuming = False
                    await self._connection.close()
        finally:
            if self.health is not None:
                await self.health.close()
        log.info("runtime %s stopped", self.name)

    async def _consume_until_stopped(self, connection: AbstractRobustConnection) -> None:
        # Confirms and consuming on separate channels: a slow confirm never
        # holds up deliveries, and each channel has one concern.
        publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consuming = await connection.channel(publisher_confirms=False)
        await consuming.set_qos(prefetch_count=self._prefetch)
        publisher = Publisher(publishing)
        consumers = []
        for subscription in self._subscriptions:
            processor = DeliveryProcessor(
                subscription,
                inbox=self._inbox,
                publisher=publisher,
                metrics=self.metrics,
                runtime=self.name,
                acks=self._acks,
            )
            # passive and robust: checked, never declared, and re-consumed after a reconnect
            queue = await consuming.declare_queue(subscription.queue.name, passive=True)
            tag = await queue.consume(partial(self._on_delivery, processor))
            consumers.append((queue, tag))
        self._consuming = True
        log.info("runtime %s consuming %s", self.name, [q.name for q, _ in consumers])

        await self._stop_requested.wait()

        self._consuming = False
        for queue, tag in consumers:
            try:
                await queue.cancel(tag)
            except Exception:  # a lost channel has no consumer left to cancel
                log.warning("could not cancel consumer of %s", queue.name, exc_info=True)
        await self._drain()

    async def _on_delivery(
        self, processor: DeliveryProcessor, message: AbstractIncomingMessage
    ) -> None:
        # aiormq cancels its own callback tasks when a channel closes; running
        # the message in a task of ours lets a handler finish through a reconnect.
        self._acks.delivered(message)
        task = asyncio.create_task(self._process(processor, message))
        self._in_flight.add(task)
        self._waiting.add(task)
        task.add_done_callback(self._in_flight.discard)
        task.add_done_callback(self._waiting.discard)

    async def _process(
        self, processor: DeliveryProcessor, message: AbstractIncomingMessage
    ) -> None:
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            await self._acks.return_to_queue(message)
            raise
        try:
            if (task := asyncio.current_task()) is not None:
                self._waiting.discard(task)
            if self._draining:
                await self._acks.return_to_queue(message)
                return
            await processor.process(message)
        finally:
            self._slots.release()

    async def _drain(self) -> None:
        """Let running handlers finish within the grace period; return the rest."""
        self._draining = True
        for task in tuple(self._waiting):
            task.cancel()  # not started yet: straight back to the queue
        if not self._in_flight:
            return
        log.info("draining %d in-flight messages", len(self._in_flight))
        _, late = await asyncio.wait(tuple(self._in_flight), timeout=self._grace_period_s)
        for task in late:
            task.cancel()
        if late:
            log.warning("returned %d messages unfinished after the grace period", len(late))
            await asyncio.gather(*late, return_exceptions=True)
        # cancelled waiting tasks are done too; collect them so nothing is left behind
        await asyncio.gather(*tuple(self._in_flight), return_exceptions=True)
