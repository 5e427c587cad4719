"""Handlers that take every message that arrived together, for work that is cheaper in bulk.

A batch handler gets the messages of one subscription that reached it
within a few milliseconds (at most ``max_batch``) and applies them at once,
typically in one transaction. Everything else stays per message: each is
claimed in the inbox, recorded, and acked on its own once the batch
returned, so a redelivery of a recorded message is still a no-op.

A batch that fails is not the end of its messages' story: a transient error
(:data:`~shared.messaging.failures.EXPECTED_TRANSIENT`) fails every one of
them, and each goes to its retry tier (``NotAttempted``, the database away,
fails every one too, and each is held); any other error may be one message's
fault (a poison message), so the messages are tried again one by one and
each gets its own outcome: the good ones are applied, the bad one alone is
retried or dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic

from shared.messaging.errors import NotAttempted
from shared.messaging.failures import EXPECTED_TRANSIENT
from shared.messaging.subscription import M
from shared.schemas import Envelope

log = logging.getLogger(__name__)

#: Handles the messages that arrived together; returns each one's follow-ups,
#: in the order of the messages. Fails as a whole by raising.
BatchHandler = Callable[[Sequence[M]], Awaitable[Sequence[Sequence[Envelope[Any]]]]]

_Waiting = tuple[Any, asyncio.Future[Sequence[Envelope[Any]]]]


class HandlerBatcher(Generic[M]):
    """A per-message handler (what the runtime calls) that gathers calls into batches.

    The first message of a batch waits at most ``max_wait_s`` for others; a
    batch of ``max_batch`` goes at once. Batches run one after another, so a
    batch handler never races itself for the same rows.
    """

    def __init__(self, handler: BatchHandler[M], *, max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._handler = handler
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._gathering: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._turn = asyncio.Lock()
        self._running: set[asyncio.Task[None]] = set()
        #: Batches handed to the handler (those of a split included): for metrics and tests.
        self.batches = 0

    async def __call__(self, message: M) -> Sequence[Envelope[Any]]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Sequence[Envelope[Any]]] = loop.create_future()
        self._gathering.append((message, done))
        if len(self._gathering) >= self._max_batch:
            self._close_batch()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_wait_s, self._close_batch)
        return await done

    def _close_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._gathering = self._gathering, []
        if batch:
            task = asyncio.create_task(self._settle(batch), name="handler-batch")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _settle(self, batch: list[_Waiting]) -> None:
        async with self._turn:
            # a caller cancelled meanwhile (a drain) is left out; its message went back
            batch = [(message, done) for message, done in batch if not done.done()]
            if not batch:
                return
            try:
                results = await self._apply([message for message, _ in batch])
            except Exception as exc:
                if len(batch) == 1 or isinstance(exc, (*EXPECTED_TRANSIENT, NotAttempted)):
                    for _, done in batch:
                        _fail(done, exc)
                    return
                log.warning("a batch of %d failed (%r); one by one now", len(batch), exc)
                for waiting in batch:
                    await self._settle_alone(waiting)
                return
            for (_, done), followups in zip(batch, results, strict=True):
                if not done.done():
                    done.set_result(followups)

    async def _settle_alone(self, waiting: _Waiting) -> None:
        message, done = waiting
        try:
            (followups,) = await self._apply([message])
        except Exception as exc:
            _fail(done, exc)
        else:
            if not done.done():
                done.set_result(followups)

    async def _apply(self, messages: list[M]) -> Sequence[Sequence[Envelope[Any]]]:
        self.batches += 1
        results = await self._handler(messages)
        if len(results) != len(messages):
            raise RuntimeError(f"batch handler answered {len(results)} of {len(messages)}")
        return results


def _fail(done: asyncio.Future[Any], exc: Exception) -> None:
    if not done.done():
        done.set_exception(exc)
