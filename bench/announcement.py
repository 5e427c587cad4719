"""`python -m bench.announcement`: an announcement to 2,000 attendees, and the API meanwhile.

Every process of the system runs as in production, each in its own process
on the same 2 cores: the API (uvicorn), the outbox relay, the scheduler, the
follow-up consumer, the email consumer, and an SMTP sink
(``bench.timed_sink``) that stamps each mail's arrival. They run against a
throw-away vhost and database (made as the tests make theirs).

Measured:

* from the announcement's POST to the last of its 2,000 emails at the sink
  (and to the first, to the end of the fan-out, to all 2,000 recorded sent);
* RSVP latency: ``POST /events/{id}/rsvps`` to another event at a fixed
  open-loop rate, first with nothing else running (baseline), then while the
  announcement goes out; each RSVP is a new attendee, so each also sends a
  confirmation email through the same consumer.

Writes ``bench/results/announcement.json`` and prints a summary.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench import harness
from calendar_service.config import DEV_JWT_SECRET
from calendar_service.security import TokenIssuer
from devtools.env import EnvSettings
from tests.support.ports import free_port
from tests.support.services import BrokerEnv, own_database, own_vhost

ROOT = Path(__file__).resolve().parents[1]
NAME = "announcement"

ATTENDEES = 2_000
RSVP_RATE = 20.0  # RSVP POSTs a second, open loop: a modest, steady load
BASELINE_S = 15.0
TIMEOUT_S = 300.0
SAMPLERS = int(RSVP_RATE * (BASELINE_S + TIMEOUT_S)) + 100


# --- the processes --------------------------------------------------------------------------


@dataclass
class Sink:
    process: asyncio.subprocess.Process
    port: int
    arrivals: list[tuple[float, str]] = field(default_factory=list)

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            stamp, _, recipient = line.decode().strip().partition(" ")
            self.arrivals.append((float(stamp), recipient))

    def to(self, recipients: set[str]) -> list[float]:
        return [stamp for stamp, recipient in self.arrivals if recipient in recipients]


async def spawn(module: str, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        env={**os.environ, "LOG_LEVEL": "WARNING", "APP_ENV": "test", **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE if module == "bench.timed_sink" else None,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def until_ready(url: str, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {within_s}s")
            await asyncio.sleep(0.2)


@asynccontextmanager
async def running_mail_sink() -> AsyncIterator[Sink]:
    """``bench.timed_sink`` on a free port, in a process of its own, its lines read as they come."""
    port = free_port()
    process = await spawn("bench.timed_sink", {}, str(port))
    try:
        assert process.stdout is not None
        assert (await process.stdout.readline()).strip() == b"ready"
        sink = Sink(process, port)
        reader = asyncio.create_task(sink.read())
        try:
            yield sink
        finally:
            reader.cancel()
    finally:
        await stop(process)


@asynccontextmanager
async def system(database_url: str, broker: BrokerEnv) -> AsyncIterator[tuple[str, Sink]]:
    """Sink, API, relay, scheduler, follow-ups and email consumer; yields the API URL."""
    async with AsyncExitStack() as stack:
        sink = await stack.enter_async_context(running_mail_sink())
        sink_port, api_port = sink.port, free_port()
        common = {"DATABASE_URL": database_url, "SMTP_HOST": "127.0.0.1"}
        processes = [
            ("calendar_service", "calendar", {"PORT": str(api_port)}, "/readyz", api_port),
            ("calendar_service.relay", "calendar", {}, "/readyz", None),
            ("calendar_service.scheduler", "calendar", {}, "/readyz", None),
            ("calendar_service.delivery_reports", "calendar", {}, "/readyz", None),
            ("email_consumer", "email", {"SMTP_PORT": str(sink_port)}, "/readyz", None),
        ]
        for module, user, extra, path, port in processes:
            port = port or free_port()
            env = {**common, "AMQP_URL": broker.amqp_url(user), "METRICS_PORT": str(port), **extra}
            process = await spawn(module, env)
            stack.push_async_callback(stop, process)
            await until_ready(f"http://127.0.0.1:{port}{path}")
        yield f"http://127.0.0.1:{api_port}", sink


# --- the data -------------------------------------------------------------------------------


async def copy_rows(dsn: str, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(table, records=rows, columns=columns)
    finally:
        await connection.close()


async def seed_users(dsn: str, prefix: str, count: int) -> list[tuple[uuid.UUID, str]]:
    """``count`` accounts loaded with COPY (no argon2 hash: they never log in)."""
    tag = uuid.uuid4().hex[:8]
    users = [
        (uuid.uuid4(), f"{prefix}-{n}-{tag}@example.com", f"{prefix.title()} {n}", "-")
        for n in range(count)
    ]
    await copy_rows(dsn, "users", ["id", "email", "name", "password_hash"], users)
    return [(user[0], user[1]) for user in users]


async def seed_going(dsn: str, event_id: str, users: list[tuple[uuid.UUID, str]]) -> None:
    rsvps = [(uuid.uuid4(), uuid.UUID(event_id), user_id, "going") for user_id, _ in users]
    await copy_rows(dsn, "rsvps", ["id", "event_id", "user_id", "status"], rsvps)


async def create_event(client: httpx.AsyncClient, headers: dict[str, str], title: str) -> str:
    starts = datetime.now(UTC) + timedelta(days=30)
    response = await client.post(
        "/events", json={"title": title, "starts_at": starts.isoformat()}, headers=headers
    )
    response.raise_for_status()
    event_id: str = response.json()["id"]
    return event_id


# --- the measurements -----------------------------------------------------------------------


async def sample_rsvp_latency(
    client: httpx.AsyncClient,
    event_id: str,
    tokens: Iterator[str],
    *,
    done: asyncio.Event,
    duration_s: float | None = None,
) -> list[tuple[float, float]]:
    """POST RSVPs at ``RSVP_RATE`` until ``done`` (or ``duration_s``).

    Returns ``(sent at, latency in ms)`` per request, sent at in unix time.
    """
    loop = asyncio.get_running_loop()
    latencies: list[tuple[float, float]] = []
    errors: list[int] = []

    async def one(token: str) -> None:
        sent_at, started = time.time(), time.perf_counter()
        response = await client.post(
            f"/events/{event_id}/rsvps",
            json={"status": "going"},
            headers={"Authorization": f"Bearer {token}"},
        )
        latencies.append((sent_at, (time.perf_counter() - started) * 1000))
        if response.status_code != 201:
            errors.append(response.status_code)

    tasks: list[asyncio.Task[None]] = []
    start = loop.time()
    while not done.is_set() and (duration_s is None or loop.time() - start < duration_s):
        tasks.append(asyncio.create_task(one(next(tokens))))
        next_at = start + len(tasks) / RSVP_RATE
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    await asyncio.gather(*tasks)
    if errors:
        raise RuntimeError(f"{len(errors)} RSVPs failed: {sorted(set(errors))}")
    return latencies


def distribution(samples: list[tuple[float, float]]) -> dict[str, float]:
    values = [ms for _, ms in samples]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "n": len(values),
        "p50_ms": round(cuts[49], 2),
        "p95_ms": round(cuts[94], 2),
        "p99_ms": round(cuts[98], 2),
        "max_ms": round(max(values), 2),
        "mean_ms": round(statistics.fmean(values), 2),
    }


def by_second(samples: list[tuple[float, float]], origin: float) -> list[dict[str, float]]:
    """``{second, n, p50_ms, max_ms}`` for each second after ``origin``: where the tail is."""
    seconds: dict[int, list[float]] = {}
    for sent_at, ms in samples:
        seconds.setdefault(int(sent_at - origin), []).append(ms)
    return [
        {
            "second": second,
            "n": len(values),
            "p50_ms": round(statistics.median(values), 1),
            "max_ms": round(max(values), 1),
        }
        for second, values in sorted(seconds.items())
    ]


async def poll(client: httpx.AsyncClient, url: str, headers: dict[str, str], key: str) -> float:
    """Wait until the announcement's progress says ``key``; return when (unix time)."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        progress = (await client.get(url, headers=headers)).json()
        if key == "fanned_out" and progress["fanned_out"]:
            return time.time()
        if key == "recorded" and progress["counts"]["email"]["sent"] == ATTENDEES:
            return time.time()
        await asyncio.sleep(0.25)
    raise RuntimeError(f"announcement not {key} after {TIMEOUT_S}s")


async def until_count(sink: Sink, recipients: set[str], count: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while len(sink.to(recipients)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(sink.to(recipients))} of {count} mails after {TIMEOUT_S}s")
        await asyncio.sleep(0.05)


async def measure(database_url: str, broker: BrokerEnv) -> dict[str, Any]:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    issuer = TokenIssuer(DEV_JWT_SECRET, timedelta(hours=2))
    async with (
        system(database_url, broker) as (api, sink),
        httpx.AsyncClient(
            base_url=api, timeout=30, limits=httpx.Limits(max_connections=64)
        ) as client,
    ):
        [(organizer_id, _)] = await seed_users(dsn, "organizer", 1)
        organizer = {"Authorization": f"Bearer {issuer.issue(organizer_id, 'user')}"}
        announced = await create_event(client, organizer, "Town hall")
        sampled = await create_event(client, organizer, "Board games night")
        crowd = await seed_users(dsn, "crowd", ATTENDEES)
        await seed_going(dsn, announced, crowd)
        crowd_addresses = {address for _, address in crowd}
        samplers = await seed_users(dsn, "sampler", SAMPLERS)
        sampler_addresses = {address for _, address in samplers}
        tokens = iter([issuer.issue(user_id, "user") for user_id, _ in samplers])

        print(f"baseline: RSVPs at {RSVP_RATE:.0f}/s for {BASELINE_S:.0f} s, nothing else")
        baseline = await sample_rsvp_latency(
            client, sampled, tokens, done=asyncio.Event(), duration_s=BASELINE_S
        )
        await until_count(sink, sampler_addresses, len(baseline))  # their confirmations are out

        print(f"announcement to {ATTENDEES} attendees, RSVPs at {RSVP_RATE:.0f}/s meanwhile")
        all_sent = asyncio.Event()
        during_task = asyncio.create_task(
            sample_rsvp_latency(client, sampled, tokens, done=all_sent)
        )
        posted_at = time.time()
        response = await client.post(
            f"/events/{announced}/announcements",
            json={"subject": "Doors open at 6", "body": "See you there.", "channels": ["email"]},
            headers=organizer,
        )
        accepted_at = time.time()
        response.raise_for_status()
        progress_url = f"/events/{announced}/announcements/{response.json()['id']}"
        fanned_out = asyncio.create_task(poll(client, progress_url, organizer, "fanned_out"))
        await until_count(sink, crowd_addresses, ATTENDEES)
        all_sent.set()
        during = await during_task
        recorded_at = await poll(client, progress_url, organizer, "recorded")
        arrivals = sorted(sink.to(crowd_addresses))
        distinct = {r for _, r in sink.arrivals} & crowd_addresses
        fanned_out_at = await fanned_out

    last = arrivals[-1] - posted_at
    return {
        "attendees": ATTENDEES,
        "emails_received": len(arrivals),
        "distinct_recipients": len(distinct),
        "sent_twice": len(arrivals) - len(distinct),
        "post_answered_ms": round((accepted_at - posted_at) * 1000, 1),
        "post_to_fanned_out_s": round(fanned_out_at - posted_at, 2),
        "post_to_first_email_s": round(arrivals[0] - posted_at, 3),
        "post_to_last_email_s": round(last, 2),
        "post_to_all_recorded_sent_s": round(recorded_at - posted_at, 2),
        "announcement_emails_per_s": round(ATTENDEES / last, 1),
        "rsvp_rate_per_s": RSVP_RATE,
        "rsvp_latency_baseline": distribution(baseline),
        "rsvp_latency_during_announcement": distribution(during),
        "rsvp_latency_by_second_after_post": by_second(during, posted_at),
    }


async def run() -> dict[str, Any]:
    env = EnvSettings()
    async with own_database(env) as url, own_vhost(env) as broker:
        figures = await measure(url, broker)
    base, during = figures["rsvp_latency_baseline"], figures["rsvp_latency_during_announcement"]
    figures["rsvp_p50_ratio_during_vs_baseline"] = round(during["p50_ms"] / base["p50_ms"], 2)
    figures["rsvp_p99_ratio_during_vs_baseline"] = round(during["p99_ms"] / base["p99_ms"], 2)
    return {
        "benchmark": "announcement",
        "machine": harness.machine(),
        "settings": {"runs_text": f"1 x {ATTENDEES} attendees"},
        "figures": figures,
        "summary": summary_rows(figures),
    }


def summary_rows(f: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows ``bench.summary`` puts in bench/results/README.md (no bench.md target)."""
    base, during = f["rsvp_latency_baseline"], f["rsvp_latency_during_announcement"]
    return [
        {
            "what": f"POST announcement -> last of {f['attendees']} emails at the sink",
            "figure": f"{f['post_to_last_email_s']} s ({f['announcement_emails_per_s']} emails/s)",
            "baseline": "-",
            "ratio": None,
            "target_text": "none set (issue 8: record it)",
        },
        {
            "what": f"RSVP POST p99 at {f['rsvp_rate_per_s']:.0f}/s while it goes out",
            "figure": f"{during['p99_ms']} ms (p50 {during['p50_ms']} ms)",
            "baseline": f"same load, no announcement: p99 {base['p99_ms']} ms "
            f"(p50 {base['p50_ms']} ms)",
            "ratio": f["rsvp_p99_ratio_during_vs_baseline"],
            "target_text": "none set",
        },
    ]


def summary(result: dict[str, Any]) -> str:
    f = result["figures"]
    base, during = f["rsvp_latency_baseline"], f["rsvp_latency_during_announcement"]
    return "\n".join(
        [
            f"announcement to {f['attendees']} attendees ({result['commit']}, {result['date']})",
            f"  POST answered in          {f['post_answered_ms']} ms",
            f"  POST -> fanned out        {f['post_to_fanned_out_s']} s",
            f"  POST -> first email       {f['post_to_first_email_s']} s",
            f"  POST -> last email        {f['post_to_last_email_s']} s"
            f"  ({f['announcement_emails_per_s']} emails/s)",
            f"  POST -> all recorded sent {f['post_to_all_recorded_sent_s']} s",
            f"  RSVP latency at {f['rsvp_rate_per_s']:.0f}/s    p50 / p95 / p99 / max (ms)",
            f"    baseline      {base['p50_ms']} / {base['p95_ms']} / {base['p99_ms']}"
            f" / {base['max_ms']}  (n={base['n']})",
            f"    announcing    {during['p50_ms']} / {during['p95_ms']} / {during['p99_ms']}"
            f" / {during['max_ms']}  (n={during['n']})",
            f"    ratio p50 {f['rsvp_p50_ratio_during_vs_baseline']}x,"
            f" p99 {f['rsvp_p99_ratio_during_vs_baseline']}x",
        ]
    )


def main() -> None:
    path = harness.write_result(NAME, asyncio.run(run()))
    print(summary(json.loads(path.read_text())))
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
