"""Telling "PostgreSQL could not be reached" apart from "PostgreSQL said no".

A server that is stopped, restarting, or that dropped the connection
(``pg_terminate_backend``, a failover, a network cut) answers nothing about
the statement: whatever was asked can be asked again once it is back. Every
process that must wait out such an outage rather than fail the work it
holds asks :func:`database_unreachable`: the consumers (a message whose inbox
cannot be reached was not attempted) and the API (503 with ``Retry-After``,
never a 500).

Every process's pools bound their acquires (:func:`bounded_pool`,
``DB_POOL_TIMEOUT_S``): a connection not free in time is
:class:`PoolExhausted`, the database busy or away, never a wait without end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from asyncpg.pool import PoolAcquireContext, PoolConnectionProxy

from shared.service.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

if TYPE_CHECKING:  # generic only in the stubs
    _Pool = asyncpg.Pool[asyncpg.Record]
    _AcquireContext = PoolAcquireContext[asyncpg.Record]
else:
    _Pool = asyncpg.Pool
    _AcquireContext = PoolAcquireContext

#: Longest pause between two tries of a write that must land.
RETRY_PAUSE_MAX_S = 2.0

#: SQLSTATE classes that mean the server or the connection went away, not the
#: statement: 08 connection exception, 57P operator intervention (terminated
#: backend, shutdown, starting up), 53300 too many connections.
_UNREACHABLE_SQLSTATES = ("08", "57P", "53300")


class PoolExhausted(TimeoutError):
    """No connection of a pool came free, or could be opened, within its acquire timeout.

    The database is busy or away: whatever was to run did not start. A
    ``TimeoutError``, as asyncpg's own acquire timeout, so code that catches
    that (or ``OSError``) keeps doing so; the name says where it came from.
    """


class BoundedPool(_Pool):
    """An asyncpg pool whose every acquire waits at most ``acquire_timeout_s``.

    ``pool.acquire()`` and what takes a connection for one statement
    (``pool.fetch``, ``pool.execute`` ...) alike: asyncpg's own
    ``acquire(timeout=...)`` with this pool's bound unless one is given,
    raising :class:`PoolExhausted` when it runs out.
    """

    __slots__ = ("acquire_timeout_s",)

    def __init__(self, dsn: str, *, acquire_timeout_s: float, **options: Any) -> None:
        super().__init__(dsn, **options)
        self.acquire_timeout_s = acquire_timeout_s

    def acquire(self, *, timeout: float | None = None) -> PoolAcquireContext[asyncpg.Record]:
        return _BoundedAcquire(self, self.acquire_timeout_s if timeout is None else timeout)


class _BoundedAcquire(_AcquireContext):
    """asyncpg's acquire, its timeout raised as :class:`PoolExhausted`."""

    __slots__ = ()

    async def __aenter__(self) -> PoolConnectionProxy[asyncpg.Record]:
        try:
            return await super().__aenter__()
        except TimeoutError as exc:
            raise self._exhausted() from exc

    def __await__(self) -> Generator[Any, None, PoolConnectionProxy[asyncpg.Record]]:
        try:
            return (yield from super().__await__())
        except TimeoutError as exc:
            raise self._exhausted() from exc

    def _exhausted(self) -> PoolExhausted:
        return PoolExhausted(f"no database connection free within {self.timeout} s")


def bounded_pool(
    dsn: str, *, acquire_timeout_s: float, min_size: int, max_size: int, **options: Any
) -> BoundedPool:
    """``asyncpg.create_pool`` with every acquire bounded (``await`` it, as asyncpg's).

    ``options`` are ``create_pool``'s (``reset``, ``server_settings``, the
    connect ``timeout`` ...); the rest take its defaults.
    """
    return BoundedPool(
        dsn,
        acquire_timeout_s=acquire_timeout_s,
        min_size=min_size,
        max_size=max_size,
        max_queries=options.pop("max_queries", 50_000),
        max_inactive_connection_lifetime=options.pop("max_inactive_connection_lifetime", 300.0),
        loop=None,
        connection_class=options.pop("connection_class", asyncpg.Connection),
        record_class=options.pop("record_class", asyncpg.Record),
        **options,
    )


#: What a loop over the database catches to back off and try again on a fresh
#: connection: the server said no (``PostgresError``), or the connection is
#: gone or unusable (refused, reset, closed under a statement, or left
#: mid-error by a backend terminated between two statements:
#: asyncpg's ``InternalClientError``, "another operation is in progress").
DATABASE_TROUBLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def database_unreachable(error: BaseException) -> bool:
    """True when ``error`` (or one it was raised ``from``) says the database was away.

    Connection refused or reset, a connect or pool-acquire timeout
    (:class:`PoolExhausted`, a ``TimeoutError``), a connection closed under
    the statement, a backend terminated by an operator, a server starting up
    or shutting down. A constraint violation, a syntax error or a statement
    timeout (``QueryCanceledError``, PostgreSQL's answer) is an answer, and
    is not.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _unreachable(current):
            return True
        current = current.__cause__
    return False


async def until_it_lands(operation: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run ``operation``, again after a pause for as long as the database is unreachable.

    For a write recording work already done (a mail sent, a push made):
    failing instead would have the work done again. Any other error is
    raised; only a cancellation (a shutdown) ends the wait otherwise.
    """
    backoff = Backoff(first_s=0.25, max_s=RETRY_PAUSE_MAX_S)
    failures = 0
    while True:
        try:
            result = await operation()
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            if failures == 0:
                log.warning("%s failed, the database is away; trying again: %r", what, exc)
            failures += 1
            await asyncio.sleep(backoff.next_delay())
            continue
        if failures:
            log.info("%s landed after %d failed tries", what, failures)
        return result


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, asyncpg.PostgresError):
        sqlstate = getattr(error, "sqlstate", None) or ""
        return sqlstate.startswith(_UNREACHABLE_SQLSTATES)
    if isinstance(error, asyncpg.InterfaceError):
        # "connection is closed", "pool is closing", and what a pooled connection
        # says once the pool took it back after it was lost under its holder
        return "clos" in str(error) or "released back to the pool" in str(error)
    # the protocol out of step with a server that went away under an idle
    # connection ("cannot switch to state …; another operation is in progress",
    # seen after pg_terminate_backend)
    return isinstance(error, OSError | TimeoutError | asyncpg.InternalClientError)
