"""A round's dead letters replayed from the store as an operator does, then audited.

    outcome = await run_with_fault(system, audience, fault)   # the round and its audit
    replayed = await replay_round(system, outcome)            # once the fault is gone
    replayed.assert_kept()     # every letter sent back arrived exactly once on its channel
    print(replayed.summary())  # archived, replayed, delivered, lost, twice, dead again

The operator's way (README "Dead letters: `rsvp-dlq`"): ``rsvp-dlq replay
QUEUE --message-id … --yes`` run as a process against the store (the
owner's ``DATABASE_URL``, the ``ops`` broker user), which sends each copy to
its origin queue, confirmed, with the same ``message_id``. A dead letter
whose message arrived on its channel all the same (``smtp_outcome_unknown``:
the mail server took it, the consumer never heard) is not sent back, as
README "Faults" tells the operator (look the ``Message-ID`` up; replay only
if it never arrived). Then each letter sent back must arrive exactly once on
its channel: not at all is *lost* (whether its copy failed again or vanished),
twice is *twice*, the same rules as :class:`~tests.faults.load.Outcome`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import asyncpg

from tests.faults.load import CHANNEL_OF_DLQ, Outcome
from tests.faults.system import ROOT, RunningSystem
from tests.support.processes import reap

#: How long the copies may take to arrive once ``rsvp-dlq replay`` has ended.
REPLAY_DEADLINE_S = 60.0
#: How long one ``rsvp-dlq replay`` may take.
CLI_TIMEOUT_S = 120.0
#: Message ids per ``rsvp-dlq replay`` (each is a ``--message-id``).
IDS_PER_CALL = 100
QUEUE_OF_CHANNEL = {channel: queue for queue, channel in CHANNEL_OF_DLQ.items()}

Letter = tuple[str, uuid.UUID]  #: (channel, message id)

STORED = """
SELECT queue, message_id, state, replay_of FROM dead_letters
WHERE queue = ANY($1::text[]) AND message_id = ANY($2::text[])
"""


@dataclass
class Replayed:
    archived: int = 0  #: the round's dead letters the audit found in the store
    chosen: set[Letter] = field(default_factory=set)  #: sent back (nothing had arrived)
    skipped: set[Letter] = field(default_factory=set)  #: arrived all the same: not sent back
    replayed: set[Letter] = field(default_factory=set)  #: marked ``replayed`` by the store
    dead_again: set[Letter] = field(default_factory=set)  #: a copy dead-lettered again
    arrivals: Counter[Letter] = field(default_factory=Counter)  #: of each chosen letter
    refused: list[str] = field(default_factory=list)  #: what a failed ``rsvp-dlq`` said
    took_s: float = 0.0

    def delivered(self) -> list[Letter]:
        return [letter for letter in self.chosen if self.arrivals[letter] == 1]

    def lost(self) -> list[Letter]:
        return [letter for letter in self.chosen if self.arrivals[letter] == 0]

    def twice(self) -> list[Letter]:
        return [letter for letter in self.chosen if self.arrivals[letter] > 1]

    def summary(self) -> str:
        return (
            f"replay: archived {self.archived}, sent back {len(self.chosen)}"
            f" (not {len(self.skipped)}: arrived all the same), replayed {len(self.replayed)},"
            f" delivered once {len(self.delivered())}, lost {len(self.lost())}"
            f" (dead again {len(self.dead_again)}), twice {len(self.twice())};"
            f" {self.took_s:.0f} s" + (f"; rsvp-dlq failed: {self.refused}" if self.refused else "")
        )

    def assert_kept(self) -> None:
        """Every letter sent back was replayed by the store and arrived exactly once."""
        assert not self.refused, self.summary()
        assert self.replayed == self.chosen, self.summary()
        assert self.lost() == [], self.summary()
        assert self.twice() == [], self.summary()


def _arrivals(system: RunningSystem) -> dict[str, Counter[uuid.UUID]]:
    return {"email": Counter(system.emails()), "push": Counter(system.pushes())}


async def replay_round(system: RunningSystem, outcome: Outcome) -> Replayed:
    """Send back the round's dead letters with ``rsvp-dlq``; wait for and count the copies."""
    result = Replayed(archived=len(outcome.dead))
    started = time.monotonic()
    seen = _arrivals(system)
    for channel, message in outcome.dead:
        already = seen[channel][message] > 0
        (result.skipped if already else result.chosen).add((channel, message))
    for channel, queue in QUEUE_OF_CHANNEL.items():
        ids = sorted(str(m) for c, m in result.chosen if c == channel)
        for start in range(0, len(ids), IDS_PER_CALL):
            chunk = ids[start : start + IDS_PER_CALL]
            args = ["replay", queue, *(a for i in chunk for a in ("--message-id", i)), "--yes"]
            code, said = await rsvp_dlq(system, *args)
            if code != 0:
                result.refused.append(f"exit {code}: {said[-400:]}")
    deadline = time.monotonic() + REPLAY_DEADLINE_S
    while True:
        await _count(system, result)
        waiting = [x for x in result.lost() if x not in result.dead_again]
        if not waiting or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2.0)  # a copy sent twice would arrive about now
    await _count(system, result)
    result.took_s = time.monotonic() - started
    return result


async def _count(system: RunningSystem, result: Replayed) -> None:
    seen = _arrivals(system)
    result.arrivals = Counter({(c, m): seen[c][m] for c, m in result.chosen})
    connection = await asyncpg.connect(system.database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch(
            STORED, list(CHANNEL_OF_DLQ), [str(m) for _, m in result.chosen]
        )
    finally:
        await connection.close()
    for row in rows:
        letter = (CHANNEL_OF_DLQ[row["queue"]], uuid.UUID(row["message_id"]))
        if letter not in result.chosen:
            continue
        if row["state"] == "replayed":
            result.replayed.add(letter)
        if row["replay_of"] is not None:  # the archived copy of a replay that failed again
            result.dead_again.add(letter)


async def rsvp_dlq(system: RunningSystem, *args: str) -> tuple[int, str]:
    """``rsvp-dlq *args`` (``python -m shared.dlq``) on the run's store and vhost, as
    README "Dead letters: `rsvp-dlq`" runs it: the owner's ``DATABASE_URL``, ``ops``."""
    env = {
        **os.environ,
        "APP_ENV": "test",
        "DATABASE_URL": system.database_url,
        "AMQP_URL": system.broker.amqp_url("ops"),
        "COLUMNS": "160",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.dlq",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(CLI_TIMEOUT_S):
            output, _ = await process.communicate()
    finally:
        await reap(process)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")
