"""``python -m bench.b5_reads`` (B5): reads at scale, 100,000 events and 10,000,000 RSVPs.

    python -m bench.b5_reads                        # seeds a throw-away database (10m), then reads
    python -m bench.b5_reads --database rsvp_scale  # reads a database seeded already

Against the API process of ``make run`` (one uvicorn worker) on a seeded
database (``devtools.seed``), from this process, ``--concurrency`` requests
in flight, each case ``--requests`` times:

- ``GET /events/{id}`` cached (a few hot events, read before) and uncached
  (each request a different event, never read in this run);
- a cursor page of ``GET /events/{id}/rsvps?limit=50`` deep in the largest
  event (cursors between its 50th and 100th percentile), as its organizer;
- ``GET /events?cursor=`` deep in the list (cursors past the middle);
- RSVP POSTs to the largest event, open loop at B1's open-loop rate
  (``bench/results/b1.json``, else ``--rate``), by seeded users.

The baseline is ``GET /healthz`` on the same process: what any request costs.
Writes ``bench/results/b5.json`` and ``b5_latency_cdf.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import harness
from bench.b1_rsvp_post import our_api
from bench.b2_figures import percentiles
from bench.b5_plot import plot
from calendar_service.api.pagination import encode_cursor
from calendar_service.config import DEV_JWT_SECRET
from calendar_service.migrate import upgrade_async
from calendar_service.security import TokenIssuer
from devtools.env import EnvSettings, _postgres_dsn
from devtools.seed.__main__ import seed_database
from devtools.seed.plan import SCALES
from tests.support.services import (
    create_broker_vhost,
    create_database,
    delete_broker_vhost,
    drop_database,
    new_resource_name,
)

NAME = "b5"
TARGETS_MS = {"cached": 10.0, "uncached": 25.0, "rsvp page": 25.0, "event list": 25.0}
Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@asynccontextmanager
async def seeded_database(args: argparse.Namespace) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The SQLAlchemy URL of a seeded database, and how seeding it went (if it was seeded here)."""
    env = EnvSettings()
    if args.database:
        yield _postgres_dsn(env.database_url, args.database), {"database": args.database}
        return
    name = new_resource_name()
    url = await create_database(env, name)
    try:
        await upgrade_async(url)
        dsn = _postgres_dsn(env.database_url, name)
        timings = await seed_database(dsn, SCALES[args.scale], mode="empty")
        yield dsn, {"database": "throw-away", "seeded": args.scale, **timings}
    finally:
        await drop_database(env, name)


@asynccontextmanager
async def api_on(dsn: str) -> AsyncIterator[tuple[str, harness.Servers]]:
    """The API process on ``dsn``, with a throw-away vhost of its own."""
    env = EnvSettings()
    broker = await create_broker_vhost(env)
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        servers = harness.Servers(env, broker, url)
        async with our_api(servers, extra_env=ROOMY_LIMITS) as api:
            yield api, servers
    finally:
        await delete_broker_vhost(env, broker.vhost)


#: anonymous and user tiers roomy enough for a benchmark from one address
ROOMY_LIMITS = {"RATE_LIMIT_ANONYMOUS": "10000000/minute", "RATE_LIMIT_USER": "10000000/minute"}


async def fixtures(dsn: str, requests: int, posts: int) -> dict[str, Any]:
    """Ids and cursors the cases read: picked from the database, not from the seed's memory."""
    db = await asyncpg.connect(dsn)
    try:
        biggest = await _row(
            db, "SELECT id, organizer_id FROM events ORDER BY going_count DESC LIMIT 1"
        )
        size = await db.fetchval("SELECT count(*) FROM rsvps WHERE event_id = $1", biggest["id"])
        events = await db.fetchval("SELECT count(*) FROM events")
        rsvp_cursors = [
            encode_cursor(*(await _row(db, RSVP_AT, biggest["id"], offset)))
            for offset in sorted(random.sample(range(size // 2, size - 60), 40))
        ]
        event_cursors = [
            encode_cursor(*(await _row(db, EVENT_AT, offset)))
            for offset in sorted(random.sample(range(events // 2, events - 30), 40))
        ]
        cold = [r["id"] for r in await db.fetch(COLD_EVENTS, requests + 100)]
        attendees = [r["id"] for r in await db.fetch(ATTENDEES, posts)]
    finally:
        await db.close()
    issuer = TokenIssuer(DEV_JWT_SECRET, timedelta(hours=3))
    return {
        "biggest": str(biggest["id"]),
        "biggest_rsvps": size,
        "organizer_token": issuer.issue(biggest["organizer_id"], "user"),
        "rsvp_cursors": rsvp_cursors,
        "event_cursors": event_cursors,
        "hot": [str(e) for e in cold[:20]],
        "cold": [str(e) for e in cold[20:]],
        "attendee_tokens": [issuer.issue(u, "user") for u in attendees],
    }


async def _row(db: asyncpg.Connection, query: str, *args: Any) -> asyncpg.Record:
    row = await db.fetchrow(query, *args)
    if row is None:
        raise RuntimeError(f"the database is not seeded: nothing for {query!r}")
    return row


RSVP_AT = (
    "SELECT created_at, id FROM rsvps WHERE event_id = $1 ORDER BY created_at, id OFFSET $2 LIMIT 1"
)
EVENT_AT = "SELECT starts_at, id FROM events ORDER BY starts_at, id OFFSET $1 LIMIT 1"
COLD_EVENTS = "SELECT id FROM events TABLESAMPLE SYSTEM (5) LIMIT $1"
ATTENDEES = "SELECT id FROM users TABLESAMPLE SYSTEM (5) LIMIT $1"


async def timed(
    client: httpx.AsyncClient, request: Request, count: int, concurrency: int
) -> tuple[list[float], dict[str, int]]:
    """Latencies (ms) of ``count`` requests, ``concurrency`` in flight; answers by status."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            started = time.perf_counter()
            response = await request(client, i)
            latencies.append((time.perf_counter() - started) * 1000)
            key = f"{response.status_code} {response.headers.get('x-cache', '')}".strip()
            statuses[key] = statuses.get(key, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def cases(f: dict[str, Any]) -> dict[str, Request]:
    organizer = {"Authorization": f"Bearer {f['organizer_token']}"}
    hot, cold = f["hot"], f["cold"]
    rsvp_pages, event_pages = f["rsvp_cursors"], f["event_cursors"]
    biggest = f["biggest"]
    return {
        "baseline": lambda c, i: c.get("/healthz"),
        "cached": lambda c, i: c.get(f"/events/{hot[i % len(hot)]}"),
        "uncached": lambda c, i: c.get(f"/events/{cold[i % len(cold)]}"),
        "rsvp page": lambda c, i: c.get(
            f"/events/{biggest}/rsvps",
            params={"limit": 50, "cursor": rsvp_pages[i % len(rsvp_pages)]},
            headers=organizer,
        ),
        "event list": lambda c, i: c.get(
            "/events", params={"limit": 20, "cursor": event_pages[i % len(event_pages)]}
        ),
    }


#: what the routes send, written out: the same reads timed without the API in between
DATABASE_READS = {
    "event by id": ("SELECT * FROM events WHERE id = $1", "cold"),
    "rsvp page": (
        "SELECT rsvps.*, users.name AS user_name FROM rsvps JOIN users ON users.id = rsvps.user_id"
        " WHERE rsvps.event_id = $1 AND (rsvps.created_at, rsvps.id) > ($2, $3)"
        " ORDER BY rsvps.created_at, rsvps.id LIMIT 51",
        "rsvp_cursors",
    ),
    "event list": (
        "SELECT * FROM events WHERE (starts_at, id) > ($1, $2) ORDER BY starts_at, id LIMIT 21",
        "event_cursors",
    ),
}


async def database_only(dsn: str, f: dict[str, Any], requests: int) -> dict[str, Any]:
    """p50/p99 of each read on one connection: the database's share of each case."""
    from calendar_service.api.pagination import decode_cursor

    db = await asyncpg.connect(dsn)
    figures = {}
    try:
        for what, (query, source) in DATABASE_READS.items():
            values = f[source]
            latencies = []
            for i in range(requests):
                value = values[i % len(values)]
                args: tuple[Any, ...]
                if source == "cold":
                    args = (uuid.UUID(value),)
                else:
                    cursor = decode_cursor(value)
                    assert cursor is not None
                    args = (
                        *([uuid.UUID(f["biggest"])] if source == "rsvp_cursors" else []),
                        *cursor,
                    )
                started = time.perf_counter()
                await db.fetch(query, *args)
                latencies.append((time.perf_counter() - started) * 1000)
            figures[what] = percentiles(latencies)
    finally:
        await db.close()
    return figures


async def rsvp_posts(api: str, f: dict[str, Any], rate: float, seconds: float) -> dict[str, Any]:
    """RSVP POSTs to the largest event, open loop (``bench.b2_load``), by seeded users."""
    count = int(rate * seconds) + 1
    tokens = f["attendee_tokens"]
    if count > len(tokens):
        raise SystemExit(f"B5: {count} RSVPs asked for, {len(tokens)} users sampled")
    plan = [{"user": str(n), "token": tokens[n], "event_id": f["biggest"]} for n in range(count)]
    with tempfile.TemporaryDirectory(prefix="b5-") as workdir:
        plan_path, out = Path(workdir) / "plan.json", Path(workdir) / "answers.jsonl"
        plan_path.write_text(json.dumps(plan))
        command = ["-m", "bench.b2_load", "--api", api, "--rate", f"{rate:.1f}"]
        command += ["--seconds", str(seconds), "--attendees", str(plan_path), "--out", str(out)]
        async with harness.process(command) as load:
            await harness.next_line(load)
        answers = [json.loads(line) for line in out.read_text().splitlines()]
    failed = sum(1 for a in answers if not 200 <= a["status"] < 300)
    latencies = [a["latency_ms"] for a in answers]
    return {"rate_per_s": rate, "sent": len(answers), "failed": failed, "latencies": latencies}


def b1_rate(default: float) -> float:
    try:
        b1 = json.loads((harness.RESULTS / "b1.json").read_text())
        return float(b1["figures"]["open_loop"]["rate_per_s"])
    except (OSError, KeyError, TypeError, ValueError):
        return default


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rate = args.rate or b1_rate(300.0)
    async with seeded_database(args) as (dsn, seeding), api_on(dsn) as (api, servers):
        f = await fixtures(dsn, args.requests, int(rate * args.post_seconds) + 2)
        limits = httpx.Limits(max_connections=args.concurrency * 2)
        results: dict[str, dict[str, Any]] = {}
        async with httpx.AsyncClient(base_url=api, timeout=30, limits=limits) as client:
            for event_id in f["hot"]:  # the hot events are in the cache before we time them
                (await client.get(f"/events/{event_id}")).raise_for_status()
            all_cases = cases(f)
            for what, request in all_cases.items():
                # warm up the route; the uncached case on hot events, so its cold ones stay cold
                warm_up = all_cases["cached"] if what == "uncached" else request
                await timed(client, warm_up, min(50, args.requests), args.concurrency)
                latencies, statuses = await timed(client, request, args.requests, args.concurrency)
                results[what] = {"statuses": statuses, "latencies": latencies}
                print(f"{what}: {percentiles(latencies)} {statuses}", flush=True)
        database = await database_only(dsn, f, args.requests)
        print(f"database alone: {database}", flush=True)
        posts = await rsvp_posts(api, f, rate, args.post_seconds)
        print(f"rsvp post: {percentiles(posts['latencies'])} failed {posts['failed']}", flush=True)
        versions = await harness.server_versions(servers)
    return report(results, posts, f, seeding, args, versions, database)


def report(
    results: dict[str, dict[str, Any]],
    posts: dict[str, Any],
    f: dict[str, Any],
    seeding: dict[str, Any],
    args: argparse.Namespace,
    versions: dict[str, str],
    database: dict[str, Any],
) -> dict[str, Any]:
    figures = {what: percentiles(r["latencies"]) for what, r in results.items()}
    query_of: dict[str, str | None] = {
        "cached": None,
        "uncached": "event by id",
        "rsvp page": "rsvp page",
        "event list": "event list",
    }
    figures["rsvp post"] = percentiles(posts["latencies"])
    base = figures["baseline"]
    labels = {
        "cached": "GET /events/{id}, cached",
        "uncached": "GET /events/{id}, uncached",
        "rsvp page": f"GET /events/{{id}}/rsvps?limit=50 deep in its {f['biggest_rsvps']:,} RSVPs",
        "event list": "GET /events?cursor= deep in the list",
    }
    summary = [
        {
            "what": f"B5 {label}, p99",
            "figure": f"{figures[what]['p99_ms']} ms (p50 {figures[what]['p50_ms']} ms)",
            "baseline": f"GET /healthz p99 {base['p99_ms']} ms"
            + (
                f"; the query alone p99 {database[query]['p99_ms']} ms"
                if (query := query_of[what])
                else ""
            ),
            "ratio": None,
            "target_text": f"<= {TARGETS_MS[what]:g} ms",
            "met": figures[what]["p99_ms"] <= TARGETS_MS[what],
        }
        for what, label in labels.items()
    ]
    summary.append(
        {
            "what": f"B5 RSVP POST to the largest event, open loop at {posts['rate_per_s']:g}/s",
            "figure": f"p99 {figures['rsvp post']['p99_ms']} ms "
            f"(p50 {figures['rsvp post']['p50_ms']} ms), {posts['failed']} failed",
            "baseline": "-",
            "ratio": None,
            "target_text": "p99 stated",
        }
    )
    return {
        "benchmark": "B5",
        "machine": {**harness.machine(), **versions},
        "settings": {
            "runs_text": f"{args.requests} requests per case, {args.concurrency} in flight",
            "seeding": seeding,
            "largest_event_rsvps": f["biggest_rsvps"],
        },
        "figures": figures,
        "database_only": database,
        "statuses": {what: r["statuses"] for what, r in results.items()},
        "latencies_ms": {
            **{what: r["latencies"] for what, r in results.items()},
            "rsvp post": posts["latencies"],
        },
        "summary": summary,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database", help="a database seeded already (kept); else one is seeded")
    parser.add_argument("--scale", choices=sorted(SCALES), default="10m")
    parser.add_argument("--requests", type=int, default=2000, help="per case")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rate", type=float, help="RSVP POSTs a second (default: B1's)")
    parser.add_argument("--post-seconds", type=float, default=15)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(measure(args))
    latencies = result.pop("latencies_ms")
    path = harness.write_result(NAME, result)
    plot(latencies, harness.RESULTS / "b5_latency_cdf.png")
    for row in result["summary"]:
        print(f"  {row['what']}: {row['figure']}", file=sys.stdout)
    print(f"written to {path.relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
