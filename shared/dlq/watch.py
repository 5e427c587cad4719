"""``stop_if_failing``: a replay watches what became of the copies it sent.

A copy's outcome shows in the database: it failed again when a new dead
letter carrying the replay's ``x-replay-id`` is archived, and it was handled
when a consumer's inbox recorded its ``message_id`` after the replay began.
Over a sliding window of the latest copies whose outcome is known, a share
of failures above the threshold stops the replay. So that the verdict comes
before the damage, the replay never has more than a window of copies with no
known outcome out at once; a copy with no outcome after ``settle_s`` (a
duplicate the inbox dropped, a slow consumer) no longer holds the replay up.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import asyncpg

FAILED_AGAIN = """
SELECT id, message_id FROM dead_letters WHERE replay_of = $1 AND id > $2 ORDER BY id
"""
HANDLED = """
SELECT message_id::text FROM consumer_inbox
WHERE message_id = ANY($1::uuid[]) AND handled_at >= $2::timestamptz
"""


@dataclass
class WatchPolicy:
    #: Copies the verdict is taken over (and the most sent with no known outcome).
    window: int = 100
    #: More than this share of the window failing again stops the replay.
    threshold: float = 0.5
    #: Known outcomes needed before a verdict.
    min_outcomes: int = 20
    settle_s: float = 10.0


@dataclass
class _Sent:
    message_id: str
    at: float
    outcome: bool | None = None  #: True handled, False failed again


@dataclass
class FailureWatch:
    replay_id: uuid.UUID
    policy: WatchPolicy = field(default_factory=WatchPolicy)
    failed_again: int = 0
    _pending: dict[str, _Sent] = field(default_factory=dict)
    _known: deque[bool] = field(default_factory=deque)
    _last_dead_id: int = 0

    def sent(self, message_ids: list[str]) -> None:
        now = time.monotonic()
        for message_id in message_ids:
            self._pending[message_id] = _Sent(message_id, now)

    def settle(self, message_id: str, handled: bool) -> None:
        if self._pending.pop(message_id, None) is None and handled:
            return  # an outcome of a copy we no longer wait for
        self._known.append(handled)
        while len(self._known) > self.policy.window:
            self._known.popleft()

    async def observe(self, db: asyncpg.Pool, started_at: object) -> None:
        """Read the outcomes that arrived since the last look."""
        for row in await db.fetch(FAILED_AGAIN, self.replay_id, self._last_dead_id):
            self._last_dead_id = row["id"]
            self.failed_again += 1
            self.settle(row["message_id"], handled=False)
        ids = [m for m in self._pending if _is_uuid(m)]
        if ids:
            for row in await db.fetch(HANDLED, ids, started_at):
                self.settle(row["message_id"], handled=True)
        horizon = time.monotonic() - self.policy.settle_s
        for message_id in [m for m, s in self._pending.items() if s.at < horizon]:
            del self._pending[message_id]

    @property
    def outstanding(self) -> int:
        """Copies sent whose outcome is not known yet (and not given up on)."""
        return len(self._pending)

    def verdict(self) -> str | None:
        """Why the replay should stop, or None to go on."""
        known = len(self._known)
        if known < self.policy.min_outcomes:
            return None
        failed = known - sum(self._known)
        if failed / known > self.policy.threshold:
            return (
                f"{failed} of the last {known} replayed messages failed again "
                f"(more than {self.policy.threshold:.0%}); fix the cause and replay the rest"
            )
        return None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
