"""``make soak``: RSVPs under random faults for a while, then what happened to all of them.

    python -m tests.faults.soak --duration 600 --seed 7

Starts the system as the fault tests do (``tests/faults/system.py``), then
round after round sends RSVPs at a steady rate while one fault from
``catalogue.py`` (picked at random) hits, and audits each round. At the end it
prints the totals: accepted, delivered (emails, pushes), retried (the
consumers' ``messages_retried_total``), dead-lettered, replayed (the soak
replays nothing itself; a dead letter is left for ``rsvp-dlq``), lost and
duplicated. It exits 1 if anything was lost, answered 500, or sent twice
outside the documented SIGKILL window.
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
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    duplicated_allowed: int = 0

    def add(self, outcome: Outcome, retried: float, allowed: int) -> None:
        self.rounds += 1
        self.accepted += len(outcome.accepted_at)
        self.refused_500 += sum(n for status, n in outcome.answers.items() if status >= 500)
        self.emails += sum(outcome.emails.values())
        self.pushes += sum(outcome.pushes.values())
        self.retried += retried
        self.dead_lettered += len(outcome.dead)
        self.lost += len(outcome.missing("email")) + len(outcome.missing("push"))
        twice = len(outcome.twice("email")) + len(outcome.twice("push"))
        self.duplicated += twice
        self.duplicated_allowed += min(twice, allowed)

    def report(self) -> str:
        return (
            f"rounds {self.rounds}; accepted {self.accepted}; 5xx {self.refused_500};"
            f" delivered {self.emails} emails, {self.pushes} pushes; retried {self.retried:.0f};"
            f" dead-lettered {self.dead_lettered}; replayed 0; lost = {self.lost};"
            f" duplicated = {self.duplicated}"
            f" ({self.duplicated_allowed} in the documented SIGKILL window)"
        )

    @property
    def kept(self) -> bool:
        return (
            self.lost == 0 and self.refused_500 == 0 and self.duplicated == self.duplicated_allowed
        )


async def retried(system: RunningSystem) -> float:
    """``messages_retried_total`` over both consumers (a restarted one counts from 0)."""
    total = 0.0
    async with httpx.AsyncClient(timeout=5.0) as client:
        for name in CONSUMERS:
            try:
                text = (await client.get(f"http://127.0.0.1:{system.ports[name]}/metrics")).text
            except httpx.TransportError:
                continue
            for family in text_string_to_metric_families(text):
                if family.name == "messages_retried":
                    total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


async def soak(duration_s: float, seed: int) -> Totals:
    rng = random.Random(seed)
    totals = Totals()
    async with running_system(EnvSettings()) as system:
        async with httpx.AsyncClient(base_url=system.api, timeout=30.0) as client:
            audience = await gather_audience(client, system, 10)
        faults = catalogue(system)
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            name = rng.choice(sorted(faults))
            fault, expected = faults[name]
            before = await retried(system)
            outcome = await run_with_fault(system, audience, fault)
            after = await retried(system)
            totals.add(outcome, max(0.0, after - before), expected.duplicates_allowed)
            print(outcome.summary(), flush=True)
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
