"""``python -m devtools.seed`` (``make seed-data``): load events, RSVPs and their history with COPY.

    python -m devtools.seed                    # small: 1,000 events, 100,000 RSVPs
    python -m devtools.seed --scale 10m        # 100,000 events, 10,000,000 RSVPs
    python -m devtools.seed --events 500 --rsvps 20000 --users 4000 --biggest 2000

Loads into the database DATABASE_URL names (the development database by
default), which must be migrated. A database that already holds users,
events, RSVPs or outbox rows is refused unless ``--append`` (add beside them) or
``--force`` (empty the seeded tables first, and whatever refers to them).
Every seeded user's password is ``seeded-password``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

import asyncpg
from argon2 import PasswordHasher
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from devtools.env import EnvSettings, _database_name, _postgres_dsn
from devtools.seed import load, rows
from devtools.seed.plan import SCALES, Scale, plan_events

PASSWORD = "seeded-password"  # noqa: S105 - the documented password of seeded accounts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.seed",
        description="Load events, RSVPs, users, notification status and outbox history "
        "with COPY into the database DATABASE_URL names.",
        epilog="A database that already holds users, events, RSVPs or outbox rows is refused "
        "unless --append or --force is given.",
    )
    parser.add_argument(
        "--scale", choices=sorted(SCALES), default="small", help="preset sizes (default small)"
    )
    parser.add_argument("--events", type=int, help="events (overrides the preset)")
    parser.add_argument("--rsvps", type=int, help="RSVPs (overrides the preset)")
    parser.add_argument("--users", type=int, help="users (overrides the preset)")
    parser.add_argument("--biggest", type=int, help="attendees of the largest event")
    parser.add_argument("--database-url", help="instead of DATABASE_URL")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--append", action="store_true", help="add beside existing rows (indexes stay in place)"
    )
    mode.add_argument(
        "--force",
        action="store_true",
        help="empty users, events, RSVPs, outbox (and what refers to them) first",
    )
    return parser.parse_args(argv)


def chosen_scale(args: argparse.Namespace) -> Scale:
    preset = SCALES[args.scale]
    changes = {
        name: getattr(args, name)
        for name in ("events", "rsvps", "users", "biggest")
        if getattr(args, name) is not None
    }
    return replace(preset, **changes)


class Bars:
    """One progress bar per table, and one for building the indexes."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def table(self, name: str, total: int) -> Callable[[int], None]:
        task = self.progress.add_task(name, total=total)
        return lambda done: self.progress.advance(task, done)

    def steps(self, name: str, total: int) -> Callable[[str], None]:
        task = self.progress.add_task(name, total=total)

        def step(what: str) -> None:
            self.progress.update(task, description=f"{name}: {what}")
            self.progress.advance(task, 1)

        return step


async def seed_database(
    dsn: str, scale: Scale, *, mode: str, progress: Progress | None = None
) -> dict[str, float]:
    """Load ``scale`` into ``dsn``; ``mode`` is "empty", "append" or "force". Seconds per phase."""
    seed = rows.Seed(
        scale=scale,
        plans=plan_events(scale, ticks=max(2 * scale.biggest, 500_000)),
        run=secrets.token_hex(4),
        password_hash=PasswordHasher().hash(PASSWORD),
    )
    bars = Bars(progress or Progress(disable=True))
    counts: dict[int, list[int]] = {}
    pushes = sum(1 for u in range(scale.users) if seed.has_push(u))
    outbox_rows = sum(-(-p.size * scale.outbox_share // 1) for p in seed.plans)
    tables: list[tuple[str, tuple[str, ...], Iterator[bytes]]] = [
        ("users", rows.USER_COLUMNS, rows.users(seed, bars.table("users", scale.users))),
        ("rsvps", rows.RSVP_COLUMNS, rows.rsvps(seed, counts, bars.table("rsvps", scale.rsvps))),
        (
            "events",
            rows.EVENT_COLUMNS,
            rows.events(seed, counts, bars.table("events", scale.events)),
        ),
        (
            "delivery_status",
            rows.STATUS_COLUMNS,
            rows.notification_statuses(seed, bars.table("notification status", 2 * scale.rsvps)),
        ),
        (
            "outbox",
            rows.OUTBOX_COLUMNS,
            rows.outbox(seed, bars.table("outbox history", int(outbox_rows))),
        ),
        (
            "push_subscriptions",
            rows.PUSH_COLUMNS,
            rows.push_subscriptions(seed, bars.table("push subscriptions", pushes)),
        ),
    ]
    timings: dict[str, float] = {}
    connection = await asyncpg.connect(dsn)
    try:
        await load.prepare_session(connection)
        started = time.perf_counter()
        async with connection.transaction():
            fresh = mode in ("empty", "force")
            objects = await load.empty_and_strip(connection) if fresh else []
            for table, columns, chunks in tables:
                await load.copy(connection, table, columns, chunks, freeze=fresh)
            timings["copy_s"] = time.perf_counter() - started
            await load.rebuild(connection, objects, bars.steps("indexes", len(objects)))
        timings["indexes_s"] = time.perf_counter() - started - timings["copy_s"]
        analyzed = time.perf_counter()
        names = ", ".join(f'"{t}"' for t in load.TABLES)
        # after an append the new rows need their visibility map; frozen ones have it
        await connection.execute(f"ANALYZE {names}" if fresh else f"VACUUM (ANALYZE) {names}")
        timings["analyze_s"] = time.perf_counter() - analyzed
        timings["total_s"] = time.perf_counter() - started
    finally:
        await connection.close()
    return {k: round(v, 1) for k, v in timings.items()}


async def main_async(args: argparse.Namespace, console: Console) -> int:
    url = args.database_url or EnvSettings().database_url
    dsn = _postgres_dsn(url)
    scale = chosen_scale(args)
    connection = await asyncpg.connect(dsn)
    try:
        present = await load.rows_present(connection)
    finally:
        await connection.close()
    holding = [table for table, rows_there in present.items() if rows_there]
    has_data = bool(holding)
    if has_data and not (args.append or args.force):
        console.print(
            f"[red]database {_database_name(url)!r} already holds rows in {', '.join(holding)}[/]: "
            "give --append to add beside them or --force to empty them first"
        )
        return 2
    mode = "append" if args.append else ("force" if has_data else "empty")
    console.print(
        f"seeding {_database_name(url)!r} ({mode}): {scale.users:,} users, {scale.events:,} "
        f"events, {scale.rsvps:,} RSVPs (largest event {scale.biggest:,})"
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        timings = await seed_database(dsn, scale, mode=mode, progress=progress)
    console.print(
        f"done in {timings['total_s']} s (copy {timings['copy_s']} s, keys and indexes "
        f"{timings['indexes_s']} s, analyze {timings['analyze_s']} s); "
        f"seeded users log in with the password {PASSWORD!r}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        chosen_scale(args)
    except ValueError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args, Console()))


if __name__ == "__main__":
    raise SystemExit(main())
