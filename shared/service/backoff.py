"""Growing delays between attempts: the one back-off every connect and retry loop uses."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays of ``first_s``, doubling up to ``max_s``; :meth:`reset` after a success.

    Doubling keeps a process from hammering a server that is restarting,
    and the cap keeps it from sleeping long after the server is back.
    """

    first_s: float = 0.5
    max_s: float = 30.0
    _next_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def next_delay(self) -> float:
        """The delay to wait now; the one after it is longer."""
        delay = self._next_s
        self._next_s = min(self._next_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next_s = self.first_s


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event | None) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile; True if it was."""
    if stop is None:
        await asyncio.sleep(seconds)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()
