"""Choosing the delay queue for a failed message (design §6.4)."""

from __future__ import annotations

import pytest

from shared.messaging.retries import retry_delay_for
from shared.messaging.topology import EMAIL_RSVP_EVENTS, RETRY_DELAYS_S


def test_each_failure_waits_in_the_next_tier() -> None:
    delays = [retry_delay_for(failed) for failed in range(1, len(RETRY_DELAYS_S) + 1)]

    assert delays == list(RETRY_DELAYS_S)


def test_retries_are_exhausted_after_the_last_tier() -> None:
    assert retry_delay_for(len(RETRY_DELAYS_S) + 1) is None


@pytest.mark.parametrize(
    ("failed", "retry_after", "expected"),
    [
        (1, 3, 5),  # smallest tier at least as long as asked for
        (1, 5, 5),
        (1, 5.5, 30),
        (1, 0.5, 1),  # never shorter than the attempt's own tier
        (2, 1, 5),
        (1, 3600, RETRY_DELAYS_S[-1]),  # longer than any tier: the longest
    ],
)
def test_retry_after_lengthens_the_wait_to_a_tier(
    failed: int, retry_after: float, expected: int
) -> None:
    assert retry_delay_for(failed, retry_after) == expected


def test_retry_after_does_not_extend_exhausted_retries() -> None:
    assert retry_delay_for(len(RETRY_DELAYS_S) + 1, retry_after=1) is None


@pytest.mark.parametrize("failed", range(1, len(RETRY_DELAYS_S) + 1))
def test_delay_queue_is_the_topologys_retry_queue_for_that_attempt(failed: int) -> None:
    delay = retry_delay_for(failed)
    assert delay is not None

    assert EMAIL_RSVP_EVENTS.retry_queue(delay) == EMAIL_RSVP_EVENTS.retry_queues[failed - 1][0]


def test_a_delay_without_a_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="no 7s retry queue"):
        EMAIL_RSVP_EVENTS.retry_queue(7)
