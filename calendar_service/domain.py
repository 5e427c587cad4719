"""RSVP rules, free of I/O: who asks, the answers an RSVP can hold, what a change publishes.

A `going` RSVP takes 1 + guests seats. The event's counters follow from the
RSVP rows themselves: a deferred trigger moves them at COMMIT (migration
0002), and the database's capacity check refuses an overbooking there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

RsvpStatus = Literal["going", "maybe", "declined"]
StoredStatus = Literal["going", "maybe", "declined", "cancelled"]
MessageType = Literal["rsvp.created", "rsvp.updated", "rsvp.cancelled"]

#: The channels an RSVP's confirmation goes out on.
CHANNELS = ("email", "push")

#: How far a notification got. A consumer's report never replaces a better
#: one (a late "failed" never hides a "sent"). "pending" (an RSVP's
#: confirmation) and "queued" (an announcement's recipient) are the same
#: state, waiting for the first report, under the names their tables use.
NOTIFICATION_RANK = {"pending": 0, "queued": 0, "failed": 1, "skipped": 2, "sent": 3}


@dataclass(frozen=True)
class Caller:
    """Who asks: the token's user and role (an admin reads what organizers read)."""

    user_id: uuid.UUID
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


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
