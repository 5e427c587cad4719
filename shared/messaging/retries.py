"""How long a failed message waits before its next attempt (design §6.4).

The delays are the topology's retry tiers (:data:`RETRY_DELAYS_S`), and the
queue that waits each one is :meth:`WorkQueue.retry_queue`; there is no other
timer. A
``retry_after`` from the failing service (``429 Retry-After``, SMTP 421 …)
can only lengthen the wait, never shorten it below the tier the attempt
count has reached.
"""

from __future__ import annotations

from shared.messaging.topology import RETRY_DELAYS_S


def retry_delay_for(failed_attempts: int, retry_after: float | None = None) -> int | None:
    """Seconds to wait before the next attempt, or None when retries are exhausted.

    ``failed_attempts`` counts the failure that just happened (1 after the
    first attempt failed). The answer is the tier of that attempt, raised to
    the smallest tier that is at least ``retry_after``; when even the longest
    tier is shorter than ``retry_after``, the longest tier is used.
    """
    if failed_attempts > len(RETRY_DELAYS_S):
        return None
    delay = RETRY_DELAYS_S[max(failed_attempts, 1) - 1]
    if retry_after is not None and retry_after > delay:
        delay = next((tier for tier in RETRY_DELAYS_S if tier >= retry_after), RETRY_DELAYS_S[-1])
    return delay
