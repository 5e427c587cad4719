"""The dead-letter operations the CLI, the admin API and the admin page all use.

:class:`DeadLetterOffice` holds one broker connection as the ``ops`` user
and turns operator requests into passes (see :mod:`shared.dlq.passes`):
list depths, browse with filters and a cursor, summarise, replay (or dry
run), drop. Every operation but :meth:`DeadLetterOffice.depths` is a full
pass over the queue, so it costs one publish and one ack per message there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Self

import aiormq
from aio_pika.abc import AbstractRobustConnection

from shared.dlq.passes import (
    DEFAULT_WINDOW,
    Action,
    Decide,
    PassCounts,
    Progress,
    QueueBusy,
    ReplayTarget,
    run_pass,
)
from shared.dlq.ratelimit import TokenBucket
from shared.dlq.selection import DeadLetter, Filter
from shared.messaging.publisher import PublishNotConfirmed
from shared.messaging.topology import dead_letter_queues
from shared.service.broker import open_broker_connection

#: How long a pass waits for another pass over the same queue to end before refusing.
BUSY_WAIT_S = 5.0


class UnknownQueue(KeyError):
    """Not one of the topology's dead-letter queues."""


class BrokerRefused(RuntimeError):
    """The broker lacks a queue or exchange the pass needs, or refused a copy.

    Nothing is lost: a message whose copy was not confirmed stays in the DLQ.
    """


class BadCursor(ValueError):
    """A cursor this office did not hand out."""


@dataclass(frozen=True)
class QueueDepth:
    name: str
    origin: str
    messages: int


@dataclass(frozen=True)
class Page:
    items: list[DeadLetter]
    next_cursor: str | None
    matched: int  #: how many messages in the queue match the filter


@dataclass(frozen=True)
class ReplayOutcome:
    matched: int
    replayed: int
    counts: PassCounts


@dataclass(frozen=True)
class FailureGroup:
    queue: str
    type: str | None
    reason: str
    exception_type: str | None
    count: int
    last_failed_at: datetime | None


@dataclass
class _Tally:
    """Counts picked messages while a pass runs; ``limit`` caps how many are taken."""

    selection: Filter
    limit: int | None = None
    matched: int = 0
    taken: int = 0
    seen: list[DeadLetter] = field(default_factory=list)

    def pick(self, letter: DeadLetter) -> bool:
        if not self.selection.matches(letter):
            return False
        self.matched += 1
        if self.limit is not None and self.taken >= self.limit:
            return False
        self.taken += 1
        return True


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = text.partition(":")
        offset = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadCursor("malformed cursor") from exc
    if kind != "o" or offset < 0:
        raise BadCursor("malformed cursor")
    return offset


class DeadLetterOffice:
    """Dead-letter operations over one lazily opened connection (``AMQP_URL`` as ``ops``)."""

    def __init__(
        self,
        amqp_url: str,
        *,
        window: int = DEFAULT_WINDOW,
        name: str = "rsvp-dlq",
        busy_wait_s: float = BUSY_WAIT_S,
    ) -> None:
        self._amqp_url = amqp_url
        self._window = window
        self._name = name
        self._connection: AbstractRobustConnection | None = None
        self._connecting = asyncio.Lock()
        self._busy_wait_s = busy_wait_s
        self._queue_locks: dict[str, asyncio.Lock] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _connected(self) -> AbstractRobustConnection:
        async with self._connecting:
            if self._connection is None or self._connection.is_closed:
                self._connection = await open_broker_connection(self._amqp_url, self._name)
            return self._connection

    async def _pass(
        self,
        queue: str,
        decide: Decide,
        *,
        rate: float | None = None,
        on_progress: Progress | None = None,
        route: ReplayTarget = ReplayTarget.QUEUE,
    ) -> PassCounts:
        """One pass over ``queue``; a second one waits a little, then is refused."""
        lock = self._queue_locks.setdefault(queue, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), self._busy_wait_s)
        except TimeoutError:
            raise QueueBusy(f"a pass over {queue} is already running") from None
        try:
            return await run_pass(
                await self._connected(),
                queue,
                decide,
                window=self._window,
                rate=TokenBucket(rate) if rate else None,
                on_progress=on_progress,
                route=route,
            )
        except (aiormq.exceptions.ChannelNotFoundEntity, PublishNotConfirmed) as exc:
            raise BrokerRefused(str(exc)) from exc
        finally:
            lock.release()

    @staticmethod
    def origin_of(queue: str) -> str:
        try:
            return dead_letter_queues()[queue]
        except KeyError:
            raise UnknownQueue(queue) from None

    async def depths(self) -> list[QueueDepth]:
        """Messages ready in every dead-letter queue of the topology."""
        connection = await self._connected()
        channel = await connection.channel()
        try:
            depths = []
            for name, origin in dead_letter_queues().items():
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity as exc:
                    raise BrokerRefused(str(exc)) from exc
                count = queue.declaration_result.message_count or 0
                depths.append(QueueDepth(name, origin, count))
            return depths
        finally:
            await channel.close()

    async def replay(
        self,
        queue: str,
        selection: Filter,
        *,
        limit: int | None = None,
        rate: float | None = None,
        dry_run: bool = False,
        on_progress: Progress | None = None,
        route: ReplayTarget = ReplayTarget.QUEUE,
    ) -> ReplayOutcome:
        """Replay the picked messages to their origin queue; a dry run only counts them.

        ``route=ReplayTarget.EXCHANGE`` publishes through the original exchange and
        routing key instead (a fanout exchange then reaches every bound queue).
        """
        self.origin_of(queue)
        tally = _Tally(selection, limit)

        def decide(letter: DeadLetter) -> Action:
            return Action.REPLAY if tally.pick(letter) and not dry_run else Action.KEEP

        counts = await self._pass(queue, decide, rate=rate, on_progress=on_progress, route=route)
        return ReplayOutcome(matched=tally.matched, replayed=counts.replayed, counts=counts)

    async def drop(self, queue: str, selection: Filter) -> int:
        """Remove the picked messages for good; returns how many were removed."""
        self.origin_of(queue)
        tally = _Tally(selection)

        def decide(letter: DeadLetter) -> Action:
            return Action.DROP if tally.pick(letter) else Action.KEEP

        counts = await self._pass(queue, decide)
        return counts.dropped

    async def browse(
        self, queue: str, selection: Filter, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """One page of the picked messages, oldest first; ``next_cursor`` continues."""
        self.origin_of(queue)
        offset = _decode_cursor(cursor) if cursor else 0
        tally = _Tally(selection)

        def decide(letter: DeadLetter) -> Action:
            if tally.pick(letter) and offset < tally.matched <= offset + limit:
                tally.seen.append(letter)
            return Action.KEEP

        await self._pass(queue, decide)
        more = tally.matched > offset + limit
        return Page(tally.seen, _encode_cursor(offset + limit) if more else None, tally.matched)

    async def summary(self) -> list[FailureGroup]:
        """Dead letters of every queue grouped by queue, type, reason and exception."""
        groups: Counter[tuple[str, str | None, str, str | None]] = Counter()
        latest: dict[tuple[str, str | None, str, str | None], datetime | None] = {}
        for depth in await self.depths():
            if depth.messages == 0:
                continue

            def decide(letter: DeadLetter, queue: str = depth.name) -> Action:
                key = (queue, letter.type, letter.reason, letter.exception_type)
                groups[key] += 1
                seen = latest.get(key)
                if letter.failed_at is not None and (seen is None or letter.failed_at > seen):
                    latest[key] = letter.failed_at
                return Action.KEEP

            await self._pass(depth.name, decide)
        return [
            FailureGroup(queue, type_, reason, exc_type, count, latest.get(key))
            for key, count in groups.most_common()
            for queue, type_, reason, exc_type in (key,)
        ]
