"""RSVP rules without I/O: the message each change publishes.

How a change moves the event's counters is the trigger's job (migration 0002),
specified against the database in tests/integration/api/test_rsvp_counters.py.
"""

from __future__ import annotations

import pytest

from calendar_service.domain import Answer, is_change, message_type_for

GOING = Answer("going", 0)
GOING_PLUS_ONE = Answer("going", 1)
GOING_PLUS_THREE = Answer("going", 3)
MAYBE = Answer("maybe", 0)
DECLINED = Answer("declined", 0)


def _id(value: object) -> str:
    """Short test ids such as ``none-going+1``."""
    if isinstance(value, Answer):
        return f"{value.status}+{value.guests}"
    return "none" if value is None else str(value)


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
