"""What a seeded database holds: how many of each row, and who answers which event.

Attendance has a long tail, as real calendars do: one headline event with
``biggest`` attendees, then a Zipf-like fall from tens of thousands down to a
handful. Each event's attendees are distinct users, drawn from the shared
pool by a stride coprime with its size; each user answers several events.
Everything is decided from a seed, so a plan is repeatable.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

#: Zipf exponent of the attendance tail (0.6: the second-largest event has a
#: few ten-thousand attendees, the median one a few dozen, at 100,000 events).
TAIL_EXPONENT = 0.6
#: strides for walking the user pool: large primes, coprime with any pool size they do not divide
STRIDES = (1_000_003, 999_983, 750_007, 500_009, 250_013, 100_003, 7_919, 104_729)


@dataclass(frozen=True)
class Scale:
    """How many rows a seed loads."""

    events: int
    rsvps: int
    users: int
    #: attendees of the headline event (the largest)
    biggest: int
    #: share of the RSVPs whose outbox rows are kept (published message history)
    outbox_share: float = 0.1
    #: share of users with a browser push subscription
    push_share: float = 0.2

    def __post_init__(self) -> None:
        if not 1 <= self.events <= self.rsvps:
            raise ValueError("need at least one event and no more events than RSVPs")
        if not self.rsvps // self.events <= self.biggest <= min(self.users, self.rsvps):
            raise ValueError("the biggest event must fit the users and the RSVPs")
        if self.rsvps - self.biggest < self.events - 1:
            raise ValueError("every other event needs at least one RSVP")


SCALES: dict[str, Scale] = {
    "tiny": Scale(events=40, rsvps=3_000, users=600, biggest=500),
    "small": Scale(events=1_000, rsvps=100_000, users=20_000, biggest=10_000),
    "10m": Scale(events=100_000, rsvps=10_000_000, users=1_000_000, biggest=100_000),
}


@dataclass(frozen=True)
class EventPlan:
    """One event's attendees: ``size`` users from ``first_user``, every ``stride`` (mod pool)."""

    index: int
    size: int
    #: index of its first RSVP among all seeded RSVPs
    first_rsvp: int
    first_user: int
    stride: int
    #: where its RSVP timestamps start on the seed's clock (in ticks)
    opened_at: int


def attendance(scale: Scale) -> list[int]:
    """Attendees per event: the biggest first, then the long tail, summing to ``scale.rsvps``."""
    rest, others = scale.rsvps - scale.biggest, scale.events - 1
    if others == 0:
        return [scale.biggest]
    weights = [(rank + 1) ** -TAIL_EXPONENT for rank in range(others)]
    total = math.fsum(weights)
    cap = min(scale.biggest, scale.users)
    sizes = [min(cap, max(1, int(rest * w / total))) for w in weights]
    # rounding left some over (or took too many): spread the difference over the tail
    shortfall, rank = rest - sum(sizes), others - 1
    while shortfall != 0:
        step = 1 if shortfall > 0 else -1
        if 1 <= sizes[rank] + step <= cap:
            sizes[rank] += step
            shortfall -= step
        rank = rank - 1 if rank > 0 else others - 1
    return [scale.biggest, *sizes]


def plan_events(scale: Scale, ticks: int, seed: int = 16) -> list[EventPlan]:
    """Every event's attendee walk and clock; events are in random order, not by size."""
    rng = random.Random(seed)  # noqa: S311 - sample data, repeatable
    sizes = attendance(scale)
    order = list(range(scale.events))
    rng.shuffle(order)  # the headline event lands somewhere in the list, not first
    strides = [s for s in STRIDES if math.gcd(s, scale.users) == 1] or [1]
    plans, first_rsvp = [], 0
    for index in order:
        size = sizes[index]
        plans.append(
            EventPlan(
                index=index,
                size=size,
                first_rsvp=first_rsvp,
                first_user=rng.randrange(scale.users),
                stride=rng.choice(strides) % scale.users or 1,
                opened_at=rng.randrange(max(1, ticks - size)),
            )
        )
        first_rsvp += size
    return plans
