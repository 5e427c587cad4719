"""RSVP rules, free of I/O: the answers an RSVP can hold and the message each change publishes.

A `going` RSVP takes 1 + guests seats. The event's counters follow from the
RSVP rows themselves: a deferred trigger moves them at COMMIT (migration
0002), and the database's capacity check refuses an overbooking there.
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
    """The seats an answer asks for are no longer free; known only when it commits."""

    def __init__(self) -> None:
        super().__init__("event is full")


class CapacityBelowSeatsTaken(DomainError):
    """An organizer tried to shrink an event below the seats already taken."""

    def __init__(self) -> None:
        super().__init__("capacity cannot be lower than the seats already taken")


class NothingToCancel(DomainError):
    def __init__(self) -> None:
        super().__init__("you have no active RSVP for this event")


@dataclass(frozen=True)
class Answer:
    """An RSVP's status and guests; ``None`` stands for no answer yet."""

    status: StoredStatus
    guests: int


def message_type_for(before: Answer | None, after: Answer) -> MessageType:
    """Which event an RSVP change publishes."""
    if after.status == "cancelled":
        return "rsvp.cancelled"
    if before is None or before.status == "cancelled":
        return "rsvp.created"
    return "rsvp.updated"


def is_change(before: Answer | None, after: Answer) -> bool:
    return before != after
