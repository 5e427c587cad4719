"""Experiment: what a push consumer's subscription lookup costs, alone or asked together.

    python -m bench.push_lookups [--users 300] [--rounds 400] [--together 8]

A throw-away database with ``--users`` users of one subscription each. Each
round asks ``--together`` lookups at once (what one inbox gather lets go side
by side), first one statement per lookup as the push consumer used to, then
through ``PostgresSubscriptionStore``, which sends them as one statement.
Prints this process's CPU and PostgreSQL's (every backend, from /proc) per
lookup, three times alternated: compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import uvloop

from bench import harness, procstat
from bench.announcement import seed_users
from push_consumer.store import PostgresSubscriptionStore

LEDGER = "push/push.rsvp_events"
#: The consumer's statement before lookups were gathered: one user, one message.
ONE_LOOKUP = """
SELECT s.id, s.endpoint, s.p256dh, s.auth, d.subscription_id IS NOT NULL AS already_sent
FROM push_subscriptions s
LEFT JOIN push_deliveries d
       ON d.consumer = $2 AND d.message_id = $3 AND d.subscription_id = s.id
WHERE s.user_id = $1
ORDER BY s.created_at, s.id
"""

Lookup = Callable[[uuid.UUID, uuid.UUID], Awaitable[Any]]


def postgres_cpu_s() -> float:
    stats = procstat.all_stats()
    return sum(procstat.tree_ticks(pid, stats) for pid in procstat.postmaster_pids(stats)) / (
        procstat.TICKS_PER_S
    )


async def cost_us(lookup: Lookup, users: list[uuid.UUID], rounds: int, together: int) -> str:
    began, postgres_began = time.process_time(), postgres_cpu_s()
    for r in range(rounds):
        await asyncio.gather(
            *(lookup(users[(r * together + i) % len(users)], uuid.uuid4()) for i in range(together))
        )
    n = rounds * together
    ours = (time.process_time() - began) * 1e6 / n
    theirs = (postgres_cpu_s() - postgres_began) * 1e6 / n
    return f"this process {ours:.0f} µs, PostgreSQL {theirs:.0f} µs a lookup"


async def measure(args: argparse.Namespace) -> None:
    async with harness.throwaway_servers() as servers:
        users = [user for user, _ in await seed_users(servers.asyncpg_dsn, "push", args.users)]
        async with asyncpg.create_pool(servers.asyncpg_dsn, min_size=4, max_size=4) as pool:
            await pool.executemany(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                " VALUES ($1, $2, $3, 'key', 'auth')",
                [(uuid.uuid4(), u, f"https://push.example/{u}") for u in users],
            )
            await pool.execute("ANALYZE push_subscriptions; ANALYZE push_deliveries")
            store = PostgresSubscriptionStore(pool, ledger=LEDGER)

            async def alone(user: uuid.UUID, message: uuid.UUID) -> Any:
                return await pool.fetch(ONE_LOOKUP, user, LEDGER, message)

            for run in range(3):
                for name, lookup in (
                    ("one statement each", alone),
                    ("gathered", store.devices_for),
                ):
                    figures = await cost_us(lookup, users, args.rounds, args.together)
                    print(f"run {run + 1}, {args.together} at once, {name}: {figures}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--together", type=int, default=8)
    uvloop.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
