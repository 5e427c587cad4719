"""``make soak``: RSVPs under random faults for a while, then what happened to all of them.

    python -m tests.faults.soak --duration 600 --seed 7

Starts the system as the fault tests do (``tests/faults/system.py``: the
dead-letter archiver among its processes), then round after round sends
RSVPs at a steady rate while one fault from ``catalogue.py`` (picked at
random) hits, and audits each round. Then, the fault gone, it does what an
operator does with the round's dead letters: ``rsvp-dlq replay`` from the
store (``replay.py``), and audits the copies: each must arrive exactly once.
At the end it prints the totals: accepted, delivered (emails, pushes, by
each round's audit), retried and dead-lettered (the consumers'
``messages_retried_total`` and ``messages_dead_lettered_total``; a restarted
consumer counts from 0), archived (the round's dead letters found in the
store), replayed (marked replayed by the store), delivered after replay
(exactly once), lost and duplicated (each with what of it came after a
replay). It exits 1 if anything was lost (also after a replay), answered
500, or sent twice outside the documented SIGKILL window (a replayed letter
never may).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools.env import EnvSettings
from tests.faults.catalogue import catalogue
from tests.faults.load import Outcome, gather_audience, run_with_fault
from tests.faults.replay import Replayed, replay_round
from tests.faults.system import RunningSystem, running_system

CONSUMERS = ("email", "push")


@dataclass
class Totals:
    rounds: int = 0
    accepted: int = 0
    refused_500: int = 0
    emails: int = 0
    pushes: int = 0
    retried: float = 0.0
    dead_lettered: float = 0.0
    archived: int = 0
    replayed: int = 0
    delivered_after_replay: int = 0
    lost: int = 0
    lost_after_replay: int = 0
    duplicated: int = 0
    duplicated_after_replay: int = 0
    duplicated_allowed: int = 0
    replay_refused: int = 0

    def add(
        self, outcome: Outcome, replayed: Replayed, counted: dict[str, float], allowed: int
    ) -> None:
        self.rounds += 1
        self.accepted += len(outcome.accepted_at)
        self.refused_500 += sum(n for status, n in outcome.answers.items() if status >= 500)
        self.emails += sum(outcome.emails.values())
        self.pushes += sum(outcome.pushes.values())
        self.retried += counted[RETRIED]
        self.dead_lettered += counted[DEAD_LETTERED]
        self.archived += replayed.archived
        self.replayed += len(replayed.replayed)
        self.delivered_after_replay += len(replayed.delivered())
        self.lost += len(outcome.missing("email")) + len(outcome.missing("push"))
        self.lost_after_replay += len(replayed.lost())
        twice = len(outcome.twice("email")) + len(outcome.twice("push"))
        self.duplicated += twice
        self.duplicated_allowed += min(twice, allowed)
        self.duplicated_after_replay += len(replayed.twice())
        self.replay_refused += len(replayed.refused)

    def report(self) -> str:
        return (
            f"rounds {self.rounds}; accepted {self.accepted}; 5xx {self.refused_500};"
            f" delivered {self.emails} emails, {self.pushes} pushes; retried {self.retried:.0f};"
            f" dead-lettered {self.dead_lettered:.0f}; archived {self.archived};"
            f" replayed {self.replayed}; delivered after replay {self.delivered_after_replay};"
            f" lost = {self.lost + self.lost_after_replay}"
            f" ({self.lost_after_replay} after replay);"
            f" duplicated = {self.duplicated + self.duplicated_after_replay}"
            f" ({self.duplicated_allowed} in the documented SIGKILL window,"
            f" {self.duplicated_after_replay} after replay)"
            + (f"; rsvp-dlq failed {self.replay_refused} times" if self.replay_refused else "")
        )

    @property
    def kept(self) -> bool:
        return (
            self.lost == 0
            and self.lost_after_replay == 0
            and self.refused_500 == 0
            and self.duplicated == self.duplicated_allowed
            and self.duplicated_after_replay == 0
            and self.replay_refused == 0
        )


RETRIED = "messages_retried"
DEAD_LETTERED = "messages_dead_lettered"


async def counters(system: RunningSystem) -> dict[str, float]:
    """``messages_retried_total`` and ``messages_dead_lettered_total`` over both consumers
    (a restarted one counts from 0)."""
    totals = {RETRIED: 0.0, DEAD_LETTERED: 0.0}
    async with httpx.AsyncClient(timeout=5.0) as client:
        for name in CONSUMERS:
            try:
                text = (await client.get(f"http://127.0.0.1:{system.ports[name]}/metrics")).text
            except httpx.TransportError:
                continue
            for family in text_string_to_metric_families(text):
                if family.name in totals:
                    totals[family.name] += sum(
                        s.value for s in family.samples if s.name.endswith("_total")
                    )
    return totals


async def soak(duration_s: float, seed: int) -> Totals:
    rng = random.Random(seed)
    totals = Totals()
    async with running_system(EnvSettings()) as system:
        async with httpx.AsyncClient(base_url=system.api, timeout=30.0) as client:
            audience = await gather_audience(client, system, 10)
        faults = catalogue(system, audience)
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            name = rng.choice(sorted(faults))
            fault, expected = faults[name]
            before = await counters(system)
            outcome = await run_with_fault(system, audience, fault)
            print(outcome.summary(), flush=True)
            replayed = await replay_round(system, outcome)
            if outcome.dead:
                print(replayed.summary(), flush=True)
            after = await counters(system)
            counted = {k: max(0.0, after[k] - before[k]) for k in after}
            totals.add(outcome, replayed, counted, expected.duplicates_allowed)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="fault order (default: random)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"soak for {args.duration:.0f} s, seed {seed}", flush=True)
    totals = asyncio.run(soak(args.duration, seed))
    print(totals.report(), flush=True)
    return 0 if totals.kept else 1


if __name__ == "__main__":
    sys.exit(main())
