"""RSVP rules without I/O: seats, counter movements and the message each change publishes."""

from __future__ import annotations

from itertools import pairwise

import pytest

from calendar_service.domain import Answer, CounterDelta, counter_delta, is_change, message_type_for

GOING = Answer("going", 0)
GOING_PLUS_ONE = Answer("going", 1)
GOING_PLUS_THREE = Answer("going", 3)
MAYBE = Answer("maybe", 0)
DECLINED = Answer("declined", 0)


def _id(value: object) -> str:
    """Short test ids such as ``none-going+1``; the expected deltas are read in the code."""
    if isinstance(value, Answer):
        return f"{value.status}+{value.guests}"
    if isinstance(value, CounterDelta):
        return ""
    return "none" if value is None else str(value)


# --- Answer.seats ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "seats"),
    [
        (Answer("going", 0), 1),
        (Answer("going", 1), 2),
        (Answer("going", 20), 21),
        (Answer("maybe", 0), 0),
        (Answer("maybe", 5), 0),
        (Answer("declined", 3), 0),
        (Answer("cancelled", 0), 0),
        (Answer("cancelled", 4), 0),
    ],
    ids=_id,
)
def test_only_going_takes_seats_one_for_the_attendee_plus_one_per_guest(
    answer: Answer, seats: int
) -> None:
    assert answer.seats == seats


# --- counter_delta ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # a first answer
        (None, GOING, CounterDelta(going_seats=1, going=1)),
        (None, GOING_PLUS_THREE, CounterDelta(going_seats=4, going=1)),
        (None, MAYBE, CounterDelta(maybe=1)),
        (None, DECLINED, CounterDelta(declined=1)),
        # a change of mind
        (GOING, MAYBE, CounterDelta(going_seats=-1, going=-1, maybe=1)),
        (GOING_PLUS_ONE, DECLINED, CounterDelta(going_seats=-2, going=-1, declined=1)),
        (MAYBE, GOING_PLUS_ONE, CounterDelta(going_seats=2, going=1, maybe=-1)),
        (DECLINED, GOING, CounterDelta(going_seats=1, going=1, declined=-1)),
        (MAYBE, DECLINED, CounterDelta(maybe=-1, declined=1)),
        (DECLINED, MAYBE, CounterDelta(maybe=1, declined=-1)),
        # guests change while going: only the seats move
        (GOING_PLUS_ONE, GOING_PLUS_THREE, CounterDelta(going_seats=2)),
        (GOING_PLUS_THREE, GOING, CounterDelta(going_seats=-3)),
        # a cancellation gives back what the answer held
        (GOING_PLUS_THREE, Answer("cancelled", 3), CounterDelta(going_seats=-4, going=-1)),
        (MAYBE, Answer("cancelled", 0), CounterDelta(maybe=-1)),
        (DECLINED, Answer("cancelled", 0), CounterDelta(declined=-1)),
        # answering again after cancelling counts like a first answer
        (Answer("cancelled", 2), GOING_PLUS_ONE, CounterDelta(going_seats=2, going=1)),
        (Answer("cancelled", 0), MAYBE, CounterDelta(maybe=1)),
    ],
    ids=_id,
)
def test_counters_move_by_the_difference_between_before_and_after(
    before: Answer | None, after: Answer, expected: CounterDelta
) -> None:
    delta = counter_delta(before, after)

    assert delta == expected
    assert not delta.is_zero


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (None, None),
        (GOING_PLUS_ONE, GOING_PLUS_ONE),
        (MAYBE, MAYBE),
        # guests of someone who is not going take no seat, so changing them moves nothing
        (Answer("maybe", 2), Answer("maybe", 0)),
        (Answer("declined", 0), Answer("declined", 4)),
        (Answer("cancelled", 1), Answer("cancelled", 1)),
    ],
    ids=_id,
)
def test_a_change_that_holds_no_more_or_fewer_seats_or_answers_moves_nothing(
    before: Answer | None, after: Answer | None
) -> None:
    assert counter_delta(before, after).is_zero


def test_the_deltas_of_a_history_add_up_to_the_counts_of_its_last_answer() -> None:
    history = [
        None,
        MAYBE,
        GOING_PLUS_THREE,
        GOING,
        DECLINED,
        Answer("cancelled", 0),
        GOING_PLUS_ONE,
    ]

    total = CounterDelta()
    for before, after in pairwise(history):
        step = counter_delta(before, after)
        total = CounterDelta(
            going_seats=total.going_seats + step.going_seats,
            going=total.going + step.going,
            maybe=total.maybe + step.maybe,
            declined=total.declined + step.declined,
        )

    assert total == counter_delta(None, GOING_PLUS_ONE)


def test_a_zero_delta_says_so_and_any_movement_does_not() -> None:
    assert CounterDelta().is_zero
    assert not CounterDelta(going_seats=-1).is_zero
    assert not CounterDelta(declined=1).is_zero


# --- message_type_for ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "message_type"),
    [
        (None, GOING, "rsvp.created"),
        (None, MAYBE, "rsvp.created"),
        (None, DECLINED, "rsvp.created"),
        (Answer("cancelled", 0), GOING, "rsvp.created"),
        (Answer("cancelled", 1), DECLINED, "rsvp.created"),
        (GOING, MAYBE, "rsvp.updated"),
        (MAYBE, DECLINED, "rsvp.updated"),
        (GOING_PLUS_ONE, GOING_PLUS_THREE, "rsvp.updated"),
        (GOING, Answer("cancelled", 0), "rsvp.cancelled"),
        (MAYBE, Answer("cancelled", 0), "rsvp.cancelled"),
        (DECLINED, Answer("cancelled", 0), "rsvp.cancelled"),
    ],
    ids=_id,
)
def test_each_change_publishes_the_message_that_names_it(
    before: Answer | None, after: Answer, message_type: str
) -> None:
    assert message_type_for(before, after) == message_type


# --- is_change ----------------------------------------------------------------------------------


def test_the_same_answer_again_is_not_a_change() -> None:
    assert not is_change(GOING_PLUS_ONE, Answer("going", 1))


@pytest.mark.parametrize(
    ("before", "after"),
    [(None, GOING), (GOING, GOING_PLUS_ONE), (GOING, MAYBE), (MAYBE, Answer("cancelled", 0))],
    ids=_id,
)
def test_a_new_status_or_guest_count_is_a_change(before: Answer | None, after: Answer) -> None:
    assert is_change(before, after)
