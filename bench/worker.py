"""How a benchmark's worker process talks to the runner: JSON lines on stdout.

A worker prints ``{"done": n}`` now and then, so the runner can draw progress,
and one ``{"result": {...}}`` at the end. Timestamps are ``time.monotonic()``,
which on Linux is one clock for every process of the machine.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def say(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def rate(count: int, first: float, last: float) -> float:
    """Messages per second from the first to the last of ``count`` (0 if too few)."""
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


class Clock:
    """First and last event times of a run, and a progress line every 0.2 s."""

    def __init__(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self._reported = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if self.count == 0:
            self.first = now
        self.count += 1
        self.last = now
        if now - self._reported > 0.2:
            self._reported = now
            say(done=self.count)

    def result(self, **extra: Any) -> dict[str, Any]:
        return {
            "messages": self.count,
            "seconds": round(self.last - self.first, 3),
            "msg_per_s": round(rate(self.count, self.first, self.last), 1),
            **extra,
        }
