"""Wait for a condition with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` every 10 ms until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return value


async def until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,
    stall: float | None = None,
    hold: float = 0.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Await ``probe`` until ``done`` says yes about what it returns; return that.

    Fails after ``timeout``. With ``stall``, a long job is judged by its
    progress rather than by a guess of its total time: it also fails once
    what ``probe`` returns has not changed for ``stall`` seconds. With
    ``hold``, ``done`` must say yes at every poll for that many seconds in a
    row: for a state made of several readings, one of which may be a moment
    behind the others. (For a probe that must be awaited; a coroutine passed
    to :func:`wait_until` would be truthy at once.)
    """
    started = time.monotonic()
    deadline = started + timeout
    last_seen: T | None = None
    changed = started
    held_since: float | None = None
    while True:
        value = await probe()
        now = time.monotonic()
        if done(value):
            held_since = now if held_since is None else held_since
            if now - held_since >= hold:
                return value
        else:
            held_since = None
        if value != last_seen:
            last_seen, changed = value, now
        if now > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s; last seen: {value!r}")
        if stall is not None and now - changed > stall:
            raise AssertionError(
                f"{what}: no progress for {stall}s (after {now - started:.0f}s); "
                f"last seen: {value!r}"
            )
        await asyncio.sleep(interval)


async def wait_until_stable(
    probe: Callable[[], T],
    *,
    quiet: float = 0.5,
    timeout: float = 10.0,
    what: str = "value",
) -> T:
    """Poll ``probe`` until its value has not changed for ``quiet`` seconds; return it.

    For state something else is still writing to (mails a dying client had
    already sent, say), so that a snapshot of it is final.
    """
    deadline = time.monotonic() + timeout
    value = probe()
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} still changing after {timeout}s; last: {value!r}")
        await asyncio.sleep(0.01)
        if (now := probe()) != value:
            value, since = now, time.monotonic()
    return value
