"""Holding a delivery while what its work needs is away (design §6.4: nothing was attempted).

When the inbox's database cannot be reached, the message was not tried, so
it must not use up a retry tier: three minutes of PostgreSQL downtime would
otherwise dead-letter every message as failed. The runtime keeps the
delivery instead and asks again after growing pauses (at most
:data:`HOLD_PAUSE_MAX_S`, so work resumes within seconds of the database's
return). ``prefetch`` bounds how many are held, so consuming pauses by itself.

A hold lasts at most :data:`HOLD_LIMIT_S`; then the message waits in a delay
queue (:data:`POSTPONE_TIER_S`) with its attempt count unchanged and the
delivery is acked, so a long outage never keeps deliveries past the
broker's consumer timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time

from shared.messaging.errors import NotAttempted
from shared.service.backoff import Backoff

log = logging.getLogger(__name__)

#: Longest pause between two tries of a held delivery.
HOLD_PAUSE_MAX_S = 2.0
#: Longest a delivery is held before it is postponed to a delay queue.
HOLD_LIMIT_S = 60.0
#: The retry tier a postponed delivery waits in (its attempt count unchanged).
POSTPONE_TIER_S = 30


class Hold:
    """The waiting of one delivery through an outage: pauses, and when to give up holding."""

    def __init__(self, *, limit_s: float | None = None) -> None:
        self._limit_s = HOLD_LIMIT_S if limit_s is None else limit_s
        self._backoff = Backoff(first_s=0.25, max_s=HOLD_PAUSE_MAX_S)
        self._since: float | None = None
        self.error: NotAttempted | None = None

    @property
    def held_s(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    @property
    def expired(self) -> bool:
        """Held for longer than the limit: postpone instead of asking again."""
        return self._since is not None and self.held_s >= self._limit_s

    async def wait(self, error: NotAttempted) -> None:
        """Note ``error`` and pause before the next try."""
        if self._since is None:
            self._since = time.monotonic()
            log.warning("not attempted, holding the delivery: %s", error)
        self.error = error
        await asyncio.sleep(self._backoff.next_delay())
