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


async def wait_until_async(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    hold: float = 0.0,
    what: str = "condition",
) -> T:
    """:func:`wait_until` for a probe that must be awaited (a query, an HTTP call).

    With ``hold``, the probe must answer truthy at every poll for that many
    seconds in a row: for a state made of several readings, one of which may
    be a moment behind the others. (Passing ``lambda: some_coroutine()`` to
    :func:`wait_until` would not do: the coroutine object itself is truthy,
    so it would return at once.)
    """
    deadline = time.monotonic() + timeout
    held_since: float | None = None
    while True:
        value = await probe()
        now = time.monotonic()
        if not value:
            held_since = None
        else:
            held_since = now if held_since is None else held_since
            if now - held_since >= hold:
                return value
        if now > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
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
