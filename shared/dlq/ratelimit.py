"""A token bucket: at most ``rate`` replays a second, in bursts of at most ``burst``."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """Tokens refill continuously at ``rate`` a second up to ``burst``; each replay takes one.

    The bucket starts full, so a run begins at once; over any stretch of
    time no more than ``burst + rate * seconds`` tokens are handed out.
    """

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        # a tenth of a second's worth, at least one message: smooth, not bursty
        self.burst = burst if burst is not None else max(1.0, rate / 10)
        self._tokens = self.burst
        self._updated = time.monotonic()

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self.rate)
