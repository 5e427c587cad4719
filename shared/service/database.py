"""Telling "PostgreSQL could not be reached" apart from "PostgreSQL said no".

A server that is stopped, restarting, or that dropped the connection
(``pg_terminate_backend``, a failover, a network cut) answers nothing about
the statement: whatever was asked can be asked again once it is back. Every
process that must wait out such an outage rather than fail the work it
holds asks :func:`database_unreachable`: the consumers (a message whose inbox
cannot be reached was not attempted) and the API (503 with ``Retry-After``,
never a 500).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from shared.service.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest pause between two tries of a write that must land.
RETRY_PAUSE_MAX_S = 2.0

#: SQLSTATE classes that mean the server or the connection went away, not the
#: statement: 08 connection exception, 57P operator intervention (terminated
#: backend, shutdown, starting up), 53300 too many connections.
_UNREACHABLE_SQLSTATES = ("08", "57P", "53300")


def database_unreachable(error: BaseException) -> bool:
    """True when ``error`` (or one it was raised ``from``) says the database was away.

    Connection refused or reset, a connect or pool-acquire timeout, a
    connection closed under the statement, a backend terminated by an
    operator, a server starting up or shutting down. A constraint violation,
    a syntax error or a statement timeout is an answer, and is not.
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
