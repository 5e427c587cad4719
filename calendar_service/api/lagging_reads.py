"""Reads that tolerate replication lag, served by ``DATABASE_READ_URL``'s replica when set.

Event pages, the event list, an event's RSVP list and announcement counts
may be a moment behind the primary: a count that lags by the replica's
replay delay misleads nobody. Nothing that must see the caller's own write
comes here (``GET /rsvps/{id}`` right after an RSVP, anything inside a write
transaction): those keep ``UowDep``, the primary.

Two things a replica must not turn into errors: a thing created a moment ago
(an event, an announcement) that it has not replayed yet, and the replica
being away. The first is looked up again on the primary when the replica
says "not found"; the second reads the primary for the request.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Annotated, TypeVar

from fastapi import Depends
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError

from calendar_service.api.deps import ContainerDep
from calendar_service.bootstrap import Container
from calendar_service.db.uow import UnitOfWork
from calendar_service.errors import NotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

PRIMARY_FALLBACKS = Counter(
    "read_replica_fallbacks_total",
    "Lag-tolerant reads the primary served instead of the replica",
    ["reason"],
)


async def _enter_reads(container: Container, stack: AsyncExitStack) -> UnitOfWork:
    if container.has_read_replica:
        try:
            return await stack.enter_async_context(
                UnitOfWork(container.read_engine, read_only=True)
            )
        except (OSError, DBAPIError) as exc:
            log.warning("read replica unreachable, reading the primary: %r", exc)
            PRIMARY_FALLBACKS.labels("replica_unreachable").inc()
    return await stack.enter_async_context(UnitOfWork(container.engine, read_only=True))


async def get_lagging_reads(container: ContainerDep) -> AsyncIterator[UnitOfWork]:
    """A unit of work on the replica (on the primary without one, or while it is away).

    Only a failure to connect falls back: a read that has begun on the
    replica raises as any other read would.
    """
    async with AsyncExitStack() as stack:
        yield await _enter_reads(container, stack)


LaggingReads = Annotated[UnitOfWork, Depends(get_lagging_reads)]


async def on_replica_or_primary(
    container: Container, reads: UnitOfWork, read: Callable[[UnitOfWork], Awaitable[T]]
) -> T:
    """``read(reads)``; when that raises ``NotFound`` and ``reads`` is the replica, the primary's.

    A client that created an event or an announcement a moment ago may ask for
    it before the replica has replayed it; the primary has it.
    """
    try:
        return await read(reads)
    except NotFound:
        if not container.has_read_replica:
            raise
    PRIMARY_FALLBACKS.labels("not_yet_replayed").inc()
    async with UnitOfWork(container.engine, read_only=True) as primary:
        return await read(primary)


async def read_lagging(container: Container, read: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """``read`` as a lag-tolerant read, outside a request's dependencies (a cache rebuild)."""
    async with AsyncExitStack() as stack:
        reads = await _enter_reads(container, stack)
        return await on_replica_or_primary(container, reads, read)
