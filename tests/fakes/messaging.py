"""In-memory stand-ins for the runtime's ports, for unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from shared.messaging.inbox import Claim
from shared.schemas import Envelope


@dataclass
class _MemoryClaim:
    inbox: MemoryInbox
    key: tuple[str, UUID]
    followups: list[bytes] | None
    busy: bool

    async def record(self, followups: list[bytes]) -> None:
        self.inbox.handled.setdefault(self.key, list(followups))


class MemoryInbox:
    """An in-memory :class:`~shared.messaging.inbox.Inbox`; forgets everything with the process."""

    def __init__(self) -> None:
        self.handled: dict[tuple[str, UUID], list[bytes]] = {}
        self._held: set[tuple[str, UUID]] = set()

    @asynccontextmanager
    async def claim(self, consumer: str, message_id: UUID) -> AsyncIterator[Claim]:
        key = (consumer, message_id)
        busy = key in self._held
        stored = self.handled.get(key)
        if not busy:
            self._held.add(key)
        try:
            yield _MemoryClaim(self, key, None if stored is None else list(stored), busy)
        finally:
            if not busy:
                self._held.discard(key)

    async def seen(self, consumer: str, message_id: UUID) -> list[bytes] | None:
        stored = self.handled.get((consumer, message_id))
        return None if stored is None else list(stored)

    async def record(self, consumer: str, message_id: UUID, followups: list[bytes]) -> None:
        self.handled.setdefault((consumer, message_id), list(followups))


class RecordingBatchHandler:
    """A batch handler that records each batch it is given and answers one follow-up each.

    ``poison`` ids fail any batch holding one of them with ``error``, as a
    row that breaks a constraint fails a whole transaction.
    """

    def __init__(self, *, poison: set[UUID] | None = None, error: Exception | None = None) -> None:
        self.batches: list[list[Envelope[Any]]] = []
        self._poison = poison or set()
        self._error = error or RuntimeError("poison")

    async def __call__(self, messages: Sequence[Envelope[Any]]) -> list[list[Envelope[Any]]]:
        self.batches.append(list(messages))
        if any(m.message_id in self._poison for m in messages):
            raise self._error
        return [[m] for m in messages]
