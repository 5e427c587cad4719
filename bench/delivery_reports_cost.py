"""Issue 13: what ``python -m calendar_service.delivery_reports`` costs per follow-up.

    python -m bench.delivery_reports_cost --messages 4000 --runs 3

Each run, on a throw-away vhost and database: N/2 RSVPs written straight to
the tables, then N follow-ups about them (an ``email.sent`` and a
``push.sent`` each) pre-loaded into ``calendar.followups``; the real process
drains them. Measured over the window from 10 % of the follow-ups recorded
in its inbox to the last: follow-ups per second, CPU ms per follow-up of the
consumer process from /proc, and PostgreSQL transactions committed in the
database per follow-up (``pg_stat_database``). B2's budget for this process
is 0.7 ms of CPU per RSVP (two follow-ups).
It writes ``bench/results/delivery_reports.json`` and prints the medians.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import aio_pika
import asyncpg
import typer

from bench import harness, procstat
from bench.harness import Servers
from shared.messaging.codec import envelope_to_amqp
from shared.messaging.topology import CALENDAR_FOLLOWUPS, FOLLOWUPS_EXCHANGE
from shared.schemas import EmailSent, EmailSentPayload, Envelope, PushSent, PushSentPayload

NAME = "delivery_reports"
TARGET_CPU_MS_PER_RSVP = 0.7  # B2: the follow-up consumer's CPU per RSVP
WARM_UP = 0.1
POLL_S = 0.05
INBOX_KEY = f"calendar/{CALENDAR_FOLLOWUPS.name}"


async def seed_rsvps(servers: Servers, count: int) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    """``count`` RSVPs (rsvp, user, event) of one organizer's event, straight into the tables."""
    database = await asyncpg.connect(servers.asyncpg_dsn)
    try:
        organizer, event = uuid.uuid4(), uuid.uuid4()
        users = [uuid.uuid4() for _ in range(count)]
        rows = [(u, f"{u.hex}@example.com", "Bench", "unused") for u in [organizer, *users]]
        await database.copy_records_to_table(
            "users", records=rows, columns=["id", "email", "name", "password_hash"]
        )
        await database.execute(
            "INSERT INTO events (id, organizer_id, title, starts_at) VALUES ($1, $2, 'bench', $3)",
            event,
            organizer,
            datetime.now(UTC),
        )
        rsvps = [(uuid.uuid4(), user, event) for user in users]
        await database.copy_records_to_table(
            "rsvps",
            records=[(r, u, e, "going") for r, u, e in rsvps],
            columns=["id", "user_id", "event_id", "status"],
        )
        return rsvps
    finally:
        await database.close()


def followups_of(rsvp: tuple[uuid.UUID, uuid.UUID, uuid.UUID]) -> list[Envelope[Any]]:
    rsvp_id, user_id, event_id = rsvp
    outcome: dict[str, Any] = {
        "source_message_id": uuid.uuid4(),
        "source_type": "rsvp.created",
        "kind": "confirmation",
        "user_id": user_id,
        "event_id": event_id,
        "rsvp_id": rsvp_id,
        "rsvp_version": 1,
    }
    email = EmailSentPayload(**outcome, recipient="guest@example.com", smtp_message_id="<b@x>")
    push = PushSentPayload(**outcome, status="sent", delivered=1)
    return [
        EmailSent.first(email, producer="email_consumer"),
        PushSent.first(push, producer="push_consumer"),
    ]


async def preload(servers: Servers, rsvps: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]) -> None:
    """Each follow-up published by the broker user of the consumer that sends it."""
    pairs = [followups_of(rsvp) for rsvp in rsvps]
    for user, messages in (("email", [p[0] for p in pairs]), ("push", [p[1] for p in pairs])):
        connection = await aio_pika.connect(servers.broker.amqp_url(user))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(FOLLOWUPS_EXCHANGE, ensure=False)
            for start in range(0, len(messages), harness.PUBLISH_WINDOW):
                window = messages[start : start + harness.PUBLISH_WINDOW]
                await asyncio.gather(
                    *(exchange.publish(envelope_to_amqp(m), m.type) for m in window)
                )


async def drain(
    worker: asyncio.subprocess.Process, database: asyncpg.Connection, before: int, total: int
) -> dict[str, Any]:
    """Wait until ``total`` more follow-ups are recorded; rate, CPU and commits after warm-up."""

    async def recorded() -> int:
        count: int = await database.fetchval(
            "SELECT count(*) FROM consumer_inbox WHERE consumer = $1", INBOX_KEY
        )
        return count - before

    async def commits() -> int:
        count: int = await database.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return count

    opened: tuple[float, int, int, int] | None = None
    deadline = time.monotonic() + 600
    while (count := await recorded()) < total:
        if worker.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {total} follow-ups recorded")
        if opened is None and count >= total * WARM_UP:
            opened = (time.monotonic(), _ticks(worker.pid), count, await commits())
        await asyncio.sleep(POLL_S)
    if opened is None:
        raise RuntimeError("every follow-up was recorded before the window opened")
    await asyncio.sleep(1.0)  # pg_stat_database is flushed by backends at most once a second
    closed = (time.monotonic(), _ticks(worker.pid), count, await commits())
    seconds, ticks, handled, xacts = (c - o for c, o in zip(closed, opened, strict=True))
    # our own polls commit too: one each, two a poll after the window
    return {
        "messages": handled,
        "seconds": round(seconds, 3),
        "msg_per_s": round(handled / (seconds - 1.0), 1),
        "cpu_ms_per_msg": round(ticks / procstat.TICKS_PER_S * 1000 / handled, 3),
        "db_commits_per_msg": round(xacts / handled, 3),
    }


def _ticks(pid: int) -> int:
    stat = procstat.read_stat(pid)
    if stat is None:
        raise RuntimeError(f"process {pid} is gone")
    return stat.own_ticks


async def one_run(servers: Servers, messages: int, log: Path) -> dict[str, Any]:
    await preload(servers, await seed_rsvps(servers, messages // 2))
    env = {
        "APP_ENV": "test",
        "DATABASE_URL": servers.database_url,
        "AMQP_URL": servers.broker.amqp_url("calendar"),
        "METRICS_PORT": "0",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    database = await asyncpg.connect(servers.asyncpg_dsn)
    try:
        already = await database.fetchval(
            "SELECT count(*) FROM consumer_inbox WHERE consumer = $1", INBOX_KEY
        )
        args = ["-m", "calendar_service.delivery_reports"]
        async with harness.process(args, env, log) as consumer:
            result = await drain(consumer, database, already, messages)
            consumer.terminate()
            await asyncio.wait_for(consumer.wait(), 30)
    finally:
        await database.close()
    return result


async def measure(messages: int, runs: int) -> dict[str, Any]:
    log = Path(tempfile.gettempdir()) / "bench_delivery_reports.log"
    log.unlink(missing_ok=True)
    results = []
    async with harness.throwaway_servers() as servers:
        versions = await harness.server_versions(servers)
        for run in range(runs):
            print(f"run {run + 1} of {runs}: {messages} follow-ups", flush=True)
            results.append(await one_run(servers, messages, log))
    keys = ("msg_per_s", "cpu_ms_per_msg", "db_commits_per_msg")
    median = {key: harness.median(r[key] for r in results) for key in keys}
    target = TARGET_CPU_MS_PER_RSVP / 2
    return {
        "benchmark": "delivery reports cost",
        "machine": {**harness.machine(), **versions},
        "settings": {"messages": messages, "runs": runs},
        "runs": results,
        "median": median,
        "targets": {"cpu_ms_per_msg": target},
        "summary": [
            {
                "what": "delivery-report consumer draining pre-loaded follow-ups, CPU per"
                f" follow-up ({median['db_commits_per_msg']} commits per follow-up)",
                "figure": f"{median['cpu_ms_per_msg']} ms CPU, {median['msg_per_s']} msg/s",
                "baseline": "-",
                "ratio": None,
                "target_text": f"<= {target} ms (B2's 0.7 ms per RSVP, two follow-ups)",
                "met": median["cpu_ms_per_msg"] <= target,
            }
        ],
    }


def main(
    messages: Annotated[int, typer.Option(min=100, help="follow-ups per run")] = 4_000,
    runs: Annotated[int, typer.Option(min=1, help="runs; medians are reported")] = 3,
) -> None:
    report = asyncio.run(measure(messages, runs))
    path = harness.write_result(NAME, report)
    print(json.dumps({"median": report["median"], "runs": report["runs"]}, indent=2))
    print(f"written to {path.relative_to(harness.ROOT)}")


if __name__ == "__main__":
    typer.run(main)
