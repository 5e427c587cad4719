"""B8: queries of the dead-letter store at 1,000,000 stored dead letters (issue 15).

    python -m bench.dlq_store_queries [--letters 1000000] [--queries 300]

Loads N dead letters into a throw-away database with COPY (5 queues, 60
failure groups, 80 % dead, the rest replayed or deleted; the group triggers
run as in production), then times what ``/admin/dead-letters`` and
``/admin/dead-letters/groups`` run: a filtered first page (by queue, by
group, by reason, by free text) and the groups. Writes
``bench/results/dlq_store_queries.json``. The baseline is a primary-key
lookup of one row on the same table: the floor of any query there.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import uvloop

from bench import harness
from shared.dlq import queries
from shared.dlq.fingerprint import failure_group
from shared.dlq.queries import StoreFilter
from shared.messaging.topology import dead_letter_queues

NAME = "dlq_store_queries"
TARGET_P99_MS = 50.0
COLUMNS = (
    "queue", "message_id", "type", "reason", "exception_type", "exception_message", "attempts",
    "failed_at", "original_exchange", "original_routing_key", "original_queue", "headers",
    "properties", "body", "group_key", "state", "changed_at",
)  # fmt: skip
CHUNK = 100_000
CAUSES = [
    ("PermanentError", "550 5.1.1 <{n}@example.org>: no such user", "invalid_recipient"),
    ("TransientError", "SMTP timeout after {n} s", "retries_exhausted"),
    ("ValidationError", "field attendee.email: value {n} is not an address", "invalid_message"),
    ("PushGone", "410 subscription {n} expired", "subscription_gone"),
]
TYPES = ("rsvp.created", "rsvp.updated", "email.send", "push.send")


def _records(count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    queues = list(dead_letter_queues().items())
    start = datetime.now(UTC) - timedelta(days=20)
    body = orjson.dumps({"type": "rsvp.created", "data": {"padding": "x" * 300}})
    records = []
    for i in range(count):
        queue, origin = queues[i % len(queues)]
        exc_type, template, reason = CAUSES[(i // 7) % len(CAUSES)]
        type_ = TYPES[(i // 3) % len(TYPES)]
        message = template.format(n=rng.randrange(10**6))
        state = "dead" if i % 10 < 8 else ("replayed" if i % 10 == 8 else "deleted")
        records.append(
            (
                queue, str(uuid.uuid4()), type_, reason, exc_type, message, 1,
                start + timedelta(seconds=i), "rsvp.events", "", origin,
                '{"x-fault-reason": "' + reason + '"}', "{}", body,
                failure_group(origin, type_, exc_type, message), state,
                None if state == "dead" else start,
            )
        )  # fmt: skip
    return records


async def _load(db: asyncpg.Pool, letters: int) -> float:
    rng = random.Random(15)
    started = time.perf_counter()
    async with db.acquire() as connection:
        for offset in range(0, letters, CHUNK):
            records = _records(min(CHUNK, letters - offset), rng)
            await connection.copy_records_to_table("dead_letters", records=records, columns=COLUMNS)
        await connection.execute("VACUUM ANALYZE dead_letters")
        await connection.execute("ANALYZE dead_letter_groups")
    return time.perf_counter() - started


MEDIANS: dict[str, float] = {}


async def _p99_ms(work: Any, runs: int, what: str = "") -> float:
    """The 99th percentile of ``runs`` timings (the median is kept in MEDIANS[what])."""
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    MEDIANS[what] = round(timings[len(timings) // 2], 2)
    return round(timings[min(len(timings) - 1, int(len(timings) * 0.99))], 2)


async def measure(letters: int, runs: int) -> dict[str, Any]:
    async with harness.throwaway_servers() as servers:
        db = await asyncpg.create_pool(servers.asyncpg_dsn, min_size=1, max_size=2)
        try:
            load_s = await _load(db, letters)
            (group, *_) = await queries.groups(db)
            queue = next(iter(dead_letter_queues()))
            some_id = await db.fetchval("SELECT id FROM dead_letters OFFSET 1000 LIMIT 1")
            cases = {
                "page by queue": StoreFilter(queue=queue, state="dead"),
                "page by group": StoreFilter(group=group["group"], state="dead"),
                "page by reason and type": StoreFilter(
                    reason="retries_exhausted", type="email.send"
                ),
                "page by free text": StoreFilter(q="no such user", state="dead"),
            }
            figures = {
                what: await _p99_ms(lambda f=f: queries.page(db, f, limit=50), runs, what)
                for what, f in cases.items()
            }
            figures["groups"] = await _p99_ms(lambda: queries.groups(db), runs, "groups")
            baseline = await _p99_ms(
                lambda: db.fetchrow("SELECT * FROM dead_letters WHERE id = $1", some_id),
                runs,
                "primary-key lookup",
            )
            versions = await harness.server_versions(servers)
        finally:
            await db.close()
    return {
        "benchmark": "B8 dead-letter store queries",
        "machine": {**harness.machine(), **versions},
        "settings": {"letters": letters, "runs_text": f"{runs} queries each at {letters} letters"},
        "load_seconds": round(load_s, 1),
        "p99_ms": figures,
        "median_ms": dict(MEDIANS),
        "baseline_p99_ms": baseline,
        "summary": [
            {
                "what": f"{what}, {letters:,} stored dead letters, p99",
                "figure": f"{p99} ms (median {MEDIANS[what]} ms)",
                "baseline": f"primary-key lookup, p99: {baseline} ms",
                "ratio": round(p99 / baseline, 1) if baseline else None,
                "target_text": f"<= {TARGET_P99_MS:.0f} ms",
                "met": p99 <= TARGET_P99_MS,
            }
            for what, p99 in figures.items()
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    result = uvloop.run(measure(args.letters, args.queries))
    path = harness.write_result(NAME, result)
    print(path.read_text())


if __name__ == "__main__":
    main()
