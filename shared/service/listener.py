"""LISTEN on a PostgreSQL channel for as long as a process runs, reconnecting when it drops.

The relay and the scheduler sleep until a trigger's NOTIFY wakes them. A
listener connection that silently died would leave them on their safety-net
timers, so this one reconnects with the shared back-off, and wakes its owner
on every (re)connection: whatever was notified while nobody listened is then
picked up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from shared.service.backoff import Backoff, sleep_unless_stopped
from shared.service.database import DATABASE_TROUBLE

log = logging.getLogger(__name__)

#: How often a quiet connection is checked for having closed under us.
CHECK_EVERY_S = 2.0


async def keep_listening(
    dsn: str,
    channel: str,
    wake: Callable[[], None],
    stop: asyncio.Event,
    *,
    backoff: Backoff | None = None,
) -> None:
    """Call ``wake()`` on each NOTIFY on ``channel`` until ``stop`` is set."""
    backoff = backoff or Backoff(first_s=1.0)
    while not stop.is_set():
        try:
            connection: asyncpg.Connection = await asyncpg.connect(dsn)
        except DATABASE_TROUBLE as exc:
            delay = backoff.next_delay()
            log.warning("cannot LISTEN on %s, retrying in %.0fs: %r", channel, delay, exc)
            await sleep_unless_stopped(delay, stop)
            continue
        backoff.reset()
        try:
            await connection.add_listener(channel, lambda *_: wake())
            wake()
            while not (stop.is_set() or connection.is_closed()):
                await sleep_unless_stopped(CHECK_EVERY_S, stop)
            if not stop.is_set():
                log.warning("LISTEN connection on %s lost; reconnecting", channel)
        except DATABASE_TROUBLE as exc:
            log.warning("LISTEN connection on %s failed: %r", channel, exc)
        finally:
            with contextlib.suppress(*DATABASE_TROUBLE):
                await connection.close()
