"""RSVP rules, free of I/O: what a change does to an event's counters and messages.

A `going` RSVP takes 1 + guests seats. Counters move by the difference
between the RSVP before and after the change, so the database can apply
them in one conditional UPDATE that also enforces capacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RsvpStatus = Literal["going", "maybe", "declined"]
StoredStatus = Literal["going", "maybe", "declined", "cancelled"]
MessageType = Literal["rsvp.created", "rsvp.updated", "rsvp.cancelled"]


class DomainError(Exception):
    """A request that the rules refuse."""


class EventFull(DomainError):
    def __init__(self, capacity: int) -> None:
        super().__init__(f"event is full (capacity {capacity})")
        self.capacity = capacity


class NothingToCancel(DomainError):
    def __init__(self) -> None:
        super().__init__("you have no active RSVP for this event")


@dataclass(frozen=True)
class Answer:
    """An RSVP's state as far as counters care; ``None`` before the first answer."""

    status: StoredStatus
    guests: int

    @property
    def seats(self) -> int:
        return 1 + self.guests if self.status == "going" else 0


@dataclass(frozen=True)
class CounterDelta:
    going_seats: int = 0
    going: int = 0
    maybe: int = 0
    declined: int = 0

    @property
    def is_zero(self) -> bool:
        return not (self.going_seats or self.going or self.maybe or self.declined)


def _counts(answer: Answer | None) -> CounterDelta:
    if answer is None:
        return CounterDelta()
    return CounterDelta(
        going_seats=answer.seats,
        going=int(answer.status == "going"),
        maybe=int(answer.status == "maybe"),
        declined=int(answer.status == "declined"),
    )


def counter_delta(before: Answer | None, after: Answer | None) -> CounterDelta:
    """How the event's counters move when an RSVP goes from ``before`` to ``after``."""
    old, new = _counts(before), _counts(after)
    return CounterDelta(
        going_seats=new.going_seats - old.going_seats,
        going=new.going - old.going,
        maybe=new.maybe - old.maybe,
        declined=new.declined - old.declined,
    )


def message_type_for(before: Answer | None, after: Answer) -> MessageType:
    """Which event an RSVP change publishes."""
    if after.status == "cancelled":
        return "rsvp.cancelled"
    if before is None or before.status == "cancelled":
        return "rsvp.created"
    return "rsvp.updated"


def is_change(before: Answer | None, after: Answer) -> bool:
    return before != after
