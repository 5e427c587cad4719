"""RSVPs at a steady rate through the running system, one fault injected, then the audit.

    outcome = await run_with_fault(system, audience, Fault("redis stopped", stop, start, 10.0))
    outcome.assert_kept()          # every accepted RSVP: one email and one push, or a DLQ entry
    print(outcome.summary())       # answers, refusals, delivered, dead-lettered, recovery time

The client behaves as a well-behaved one does: a 503 is tried again after its
``Retry-After``, a lost answer again with the same ``Idempotency-Key``. An
RSVP is *accepted* when it got its 201. What is audited is the outbox of the
test's events (read straight from the database): every ``rsvp.*`` event
written must reach the attendee once by email and once by push, or be a dead
letter of the channel with its ``x-fault-reason``. Dead letters are read
where an operator finds them: the dead-letter store the archiver fills from
the DLQs (``dead_letters``), not the queues, which the archiver drains.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from shared.messaging.topology import EMAIL_RSVP_EVENTS, PUSH_RSVP_EVENTS
from tests.faults.system import RunningSystem
from tests.support.api import PUSH_SUBSCRIPTIONS, create_event, register

#: How long every accepted RSVP may take to be delivered once the load and the fault are over.
DELIVERY_DEADLINE_S = 90.0
#: Tries of one RSVP: a 503 or a lost answer is asked again.
TRIES = 30
#: The channel of each RSVP-events dead-letter queue.
CHANNEL_OF_DLQ = {
    EMAIL_RSVP_EVENTS.dead_letter_queue: "email",
    PUSH_RSVP_EVENTS.dead_letter_queue: "push",
}
#: The store's reason when a letter had neither ``x-fault-reason`` nor ``x-death``.
NO_REASON = "unknown"


@dataclass
class Audience:
    """An organizer and attendees, each attendee with a push subscription at the push service."""

    organizer: dict[str, Any]
    attendees: list[dict[str, Any]]


async def gather_audience(client: httpx.AsyncClient, system: RunningSystem, size: int) -> Audience:
    organizer = await register(client, name="Organizer")
    attendees = []
    for n in range(size):
        attendee = await register(client, name=f"Attendee {n}")
        subscription = system.push.subscribe()
        answer = await client.post(
            PUSH_SUBSCRIPTIONS, json=subscription.as_json(), headers=attendee["headers"]
        )
        assert answer.status_code == 201, answer.text
        attendees.append(attendee)
    return Audience(organizer, attendees)


@dataclass
class Fault:
    """What goes wrong ``at_s`` into the load, and (after ``lasting_s``) how it ends."""

    name: str
    inject: Callable[[], Awaitable[object]]
    restore: Callable[[], Awaitable[object]] | None = None
    lasting_s: float = 0.0
    at_s: float = 2.0


@dataclass
class Outcome:
    fault: str
    answers: Counter[int] = field(default_factory=Counter)  #: final status of each RSVP
    refused: Counter[int] = field(default_factory=Counter)  #: answers tried again (503, none)
    accepted_at: dict[str, float] = field(default_factory=dict)  #: rsvp id -> 201 time
    rsvp_of: dict[uuid.UUID, str] = field(default_factory=dict)  #: outbox message -> rsvp id
    emails: Counter[uuid.UUID] = field(default_factory=Counter)
    pushes: Counter[uuid.UUID] = field(default_factory=Counter)
    dead: dict[tuple[str, uuid.UUID], str] = field(default_factory=dict)  #: (channel, id) -> why
    ended_at: float = 0.0  #: when the fault was over (restored, or injected if instant)
    recovery_s: float = 0.0
    took: dict[str, float] = field(default_factory=dict)  #: seconds of each phase

    def missing(self, channel: str) -> list[uuid.UUID]:
        seen = self.emails if channel == "email" else self.pushes
        return [m for m in self.rsvp_of if not seen[m] and (channel, m) not in self.dead]

    def twice(self, channel: str) -> list[uuid.UUID]:
        seen = self.emails if channel == "email" else self.pushes
        return [m for m in self.rsvp_of if seen[m] > 1]

    def summary(self) -> str:
        return (
            f"{self.fault}: {sum(self.answers.values())} RSVPs, answers {dict(self.answers)},"
            f" tried again {dict(self.refused)}; events {len(self.rsvp_of)};"
            f" emails {sum(self.emails.values())}, pushes {sum(self.pushes.values())},"
            f" dead-lettered {len(self.dead)} {sorted(set(self.dead.values()))};"
            f" lost {len(self.missing('email'))}+{len(self.missing('push'))},"
            f" twice {len(self.twice('email'))}+{len(self.twice('push'))};"
            f" recovered {self.recovery_s:.1f} s after the fault ended;"
            f" phases {', '.join(f'{k} {v:.0f} s' for k, v in self.took.items())}"
        )

    def assert_kept(self, *, duplicates_allowed: int = 0) -> None:
        """No 500, every accepted RSVP's event written, delivered once or dead-lettered."""
        assert not [s for s in self.answers if s >= 500 or s == 0], self.summary()
        assert set(self.answers) == {201}, self.summary()
        assert set(self.accepted_at) <= set(self.rsvp_of.values()), "an accepted RSVP has no event"
        assert self.missing("email") == [], self.summary()
        assert self.missing("push") == [], self.summary()
        assert all(self.dead.values()), "a dead letter without x-fault-reason"
        twice = len(self.twice("email")) + len(self.twice("push"))
        assert twice <= duplicates_allowed, self.summary()


async def run_with_fault(
    system: RunningSystem,
    audience: Audience,
    fault: Fault,
    *,
    rate: float = 10.0,
    duration_s: float = 14.0,
) -> Outcome:
    """RSVPs at ``rate`` per second for ``duration_s``, ``fault`` meanwhile; then the audit."""
    outcome = Outcome(fault.name)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=system.api, timeout=10.0) as client:
        total = int(rate * duration_s)
        per_event = len(audience.attendees)
        events = [
            await create_event(client, audience.organizer, title=f"{fault.name} {n}", capacity=500)
            for n in range(math.ceil(total / per_event))
        ]
        pairs = [(e, a) for e in events for a in audience.attendees][:total]
        outcome.took["events"] = time.monotonic() - started
        faulty = asyncio.create_task(_inject(fault, outcome))
        begin = time.monotonic()
        answering = []
        for n, (event, attendee) in enumerate(pairs):
            await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
            answering.append(asyncio.create_task(_answer(client, event, attendee, outcome)))
        await faulty
        await asyncio.gather(*answering)
    outcome.took["load"] = time.monotonic() - begin
    event_ids = {e["id"] for e in events}
    audit = time.monotonic()
    await _audit(system, outcome, event_ids, since=started)
    outcome.took["audit"] = time.monotonic() - audit
    return outcome


async def _inject(fault: Fault, outcome: Outcome) -> None:
    await asyncio.sleep(fault.at_s)
    await fault.inject()
    if fault.restore is not None:
        await asyncio.sleep(fault.lasting_s)
        await fault.restore()
    outcome.ended_at = time.monotonic()


async def _answer(
    client: httpx.AsyncClient, event: dict[str, Any], attendee: dict[str, Any], outcome: Outcome
) -> None:
    headers = {**attendee["headers"], "Idempotency-Key": uuid.uuid4().hex}
    status = 0
    for _ in range(TRIES):
        try:
            response = await client.post(
                f"/events/{event['id']}/rsvps", json={"status": "going"}, headers=headers
            )
        except httpx.TransportError:
            outcome.refused[0] += 1
            await asyncio.sleep(1.0)
            continue
        status = response.status_code
        if status == 503:
            outcome.refused[503] += 1
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        if status == 201:
            outcome.accepted_at[response.json()["id"]] = time.monotonic()
        break
    outcome.answers[status] += 1


async def _audit(
    system: RunningSystem, outcome: Outcome, event_ids: set[str], *, since: float
) -> None:
    """Wait until every event written is delivered or dead-lettered; count; time the recovery."""
    connection = await asyncpg.connect(system.database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch(
            "SELECT message_id, body FROM outbox WHERE message_type LIKE 'rsvp.%'"
            " AND created_at > now() - make_interval(secs => $1)",
            time.monotonic() - since + 5,
        )
    finally:
        await connection.close()
    for row in rows:
        data = json.loads(row["body"])["data"]
        if data["event"]["event_id"] in event_ids:
            outcome.rsvp_of[row["message_id"]] = data["rsvp_id"]
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while True:
        await _count(system, outcome)
        if not (outcome.missing("email") or outcome.missing("push")):
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # a copy sent twice would arrive about now
    await _count(system, outcome)
    outcome.recovery_s = _recovery(system, outcome)


def _recovery(system: RunningSystem, outcome: Outcome) -> float:
    """Seconds from the fault's end until delivery caught up.

    The later of: the last delivery of an RSVP accepted before the fault
    ended (the backlog), and the first delivery of one accepted after it
    (fresh RSVPs flow again).
    """
    before: list[float] = []
    after: list[float] = []
    for message, rsvp in outcome.rsvp_of.items():
        accepted = outcome.accepted_at.get(rsvp)
        email, push = system.email_arrivals.get(message), system.push_arrivals(message)
        if accepted is None or email is None or push is None:
            continue
        (before if accepted <= outcome.ended_at else after).append(max(email, push))
    backlog = max(before, default=outcome.ended_at)
    fresh = min(after, default=outcome.ended_at)
    return max(0.0, backlog - outcome.ended_at, fresh - outcome.ended_at)


async def _count(system: RunningSystem, outcome: Outcome) -> None:
    ours = outcome.rsvp_of
    outcome.emails = Counter(m for m in system.emails() if m in ours)
    outcome.pushes = Counter(m for m in system.pushes() if m in ours)
    outcome.dead = await stored_dead_letters(system, ours)


async def stored_dead_letters(
    system: RunningSystem, messages: Collection[uuid.UUID]
) -> dict[tuple[str, uuid.UUID], str]:
    """(channel, message id) -> reason of every archived dead letter of ``messages``.

    Whatever its state since (a replayed one was dead-lettered all the same).
    A reason the store had to call "unknown" is given as "" (no ``x-fault-reason``).
    """
    connection = await asyncpg.connect(system.database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch(
            "SELECT queue, message_id, reason FROM dead_letters"
            " WHERE queue = ANY($1::text[]) AND message_id = ANY($2::text[]) ORDER BY id",
            list(CHANNEL_OF_DLQ),
            [str(m) for m in messages],
        )
    finally:
        await connection.close()
    return {
        (CHANNEL_OF_DLQ[row["queue"]], uuid.UUID(row["message_id"])): (
            "" if row["reason"] == NO_REASON else row["reason"]
        )
        for row in rows
    }
