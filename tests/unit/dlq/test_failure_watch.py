"""``stop_if_failing``: the verdict over a sliding window of known outcomes."""

from __future__ import annotations

import uuid

from shared.dlq.watch import FailureWatch, WatchPolicy


def _watch(window: int = 10, min_outcomes: int = 4) -> FailureWatch:
    policy = WatchPolicy(window=window, threshold=0.5, min_outcomes=min_outcomes)
    return FailureWatch(uuid.uuid4(), policy)


def _outcomes(watch: FailureWatch, handled: list[bool]) -> None:
    ids = [str(uuid.uuid4()) for _ in handled]
    watch.sent(ids)
    for message_id, ok in zip(ids, handled, strict=True):
        watch.settle(message_id, handled=ok)


def test_no_verdict_before_enough_outcomes_are_known() -> None:
    watch = _watch()
    _outcomes(watch, [False, False, False])

    assert watch.verdict() is None


def test_more_than_the_threshold_failing_again_stops_the_replay() -> None:
    watch = _watch()
    _outcomes(watch, [False, False, False, True])

    assert "3 of the last 4" in (watch.verdict() or "")


def test_old_failures_slide_out_of_the_window() -> None:
    watch = _watch(window=4)
    _outcomes(watch, [False, False, False, True, True, True, True])

    assert watch.verdict() is None


def test_copies_without_an_outcome_are_outstanding_until_settled() -> None:
    watch = _watch()
    watch.sent(["a", "b"])
    watch.settle("a", handled=True)

    assert watch.outstanding == 1
