"""``python -m bench.b2_end_to_end`` (B2, with B4 and B7): the whole system under RSVP load.

Every process `make run` starts runs on the same cores as PostgreSQL,
RabbitMQ, both sinks and the load generator (``bench.b2_load``, open loop, a
process of its own). Two phases: a steady rate (``--rate`` for ``--seconds``:
CPU per RSVP) and a burst (``--burst-rate`` for ``--burst-seconds``: does it
keep up). For each: CPU per RSVP of every process from /proc (load generator
and sinks excluded), HTTP latency, 2xx -> mail and 2xx -> push, the relay's
commit -> confirm lag (B4), peak RSS (B7), and lost or duplicated
notifications, which make it exit non-zero.

``--profile DIR`` also samples every system process with py-spy during each
phase and writes ``DIR/<phase>-<process>.txt`` (collapsed stacks, as
``py-spy record --native -f raw`` writes them: C frames included, so time in
the C parts of uvloop and asyncpg and in system calls shows where it is spent).
Sampling pauses the sampled process for each sample: a profiled run's figures
are printed, not written, and are not quoted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import b2_report, harness, procstat
from bench.b2_figures import PhaseRecord, figures
from bench.b2_system import Attendee, System, prepare_attendees, running_system

NAME = "b2"
LAG_METRIC = "outbox_publish_lag_seconds"
SETTLE_S = 1.0  # after the last notification: late duplicates and follow-ups land
EVENTS = 50


async def lag_buckets(system: System) -> dict[float, float]:
    """The relay's lag histogram, cumulative counts by upper bound (whoever exports it)."""
    buckets: dict[float, float] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for url in system.metrics_urls():
            try:
                text = (await client.get(url)).text
            except httpx.HTTPError:
                continue
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == f"{LAG_METRIC}_bucket":
                        le = float(sample.labels["le"])
                        buckets[le] = buckets.get(le, 0.0) + sample.value
    return buckets


def cpu_groups(system: System) -> dict[str, list[int]]:
    """What is measured: each system process, PostgreSQL's server, RabbitMQ's VM."""
    stats = procstat.all_stats()
    groups = {p.name: [p.handle.pid] for p in system.measured if p.handle is not None}
    groups["postgresql"] = procstat.postmaster_pids(stats)
    groups["rabbitmq"] = procstat.broker_pids(stats)
    return groups


async def sample_memory(system: System, peaks: dict[str, int]) -> None:
    """Peak RSS of each system process, read every second until cancelled."""
    while True:
        stats = procstat.all_stats()
        for process in system.measured:
            if process.handle is not None:
                rss = procstat.tree_rss_bytes(process.handle.pid, stats)
                peaks[process.name] = max(peaks.get(process.name, 0), rss)
        await asyncio.sleep(1.0)


def push_arrivals(system: System, owners: dict[str, str]) -> dict[str, list[float]]:
    arrivals: dict[str, list[float]] = {}
    if system.push_arrivals.exists():
        for line in system.push_arrivals.read_text().splitlines():
            push = json.loads(line)
            user = owners.get(push["subscription_id"], push["subscription_id"])
            arrivals.setdefault(user, []).append(push["at"])
    return arrivals


def mail_arrivals(system: System, users: set[str]) -> dict[str, list[float]]:
    arrivals: dict[str, list[float]] = {}
    for stamp, recipient in system.mail.arrivals:
        if recipient in users:
            arrivals.setdefault(recipient, []).append(stamp)
    return arrivals


async def drive_load(
    system: System, attendees: list[Attendee], rate: float, seconds: float, workdir: Path
) -> list[dict[str, Any]]:
    plan, out = workdir / "attendees.json", workdir / "answers.jsonl"
    plan.write_text(json.dumps([a.as_json() for a in attendees]))
    args = ["-m", "bench.b2_load", "--api", system.api, "--rate", str(rate)]
    args += ["--seconds", str(seconds), "--attendees", str(plan), "--out", str(out)]
    async with harness.process(args, log=workdir / "load.log") as load:
        await harness.next_line(load)
    return [json.loads(line) for line in out.read_text().splitlines()]


async def profiling(
    system: System, phase: str, seconds: float, directory: Path | None
) -> list[asyncio.subprocess.Process]:
    """py-spy on every measured process for the phase (nothing when ``directory`` is None)."""
    if directory is None:
        return []
    # the venv's own, also when its bin folder is not on PATH
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy (it comes with `make venv`)")
    samplers = []
    for process in system.measured:
        if process.handle is None:
            continue
        out = directory / f"{phase}-{process.name}.txt"
        command = [spy, "record", "--native", "-r", "250", "-f", "raw"]
        command += ["-d", str(int(seconds)), "-o", str(out), "-p", str(process.handle.pid)]
        samplers.append(
            await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        )
    return samplers


async def run_phase(
    system: System,
    name: str,
    attendees: list[Attendee],
    rate: float,
    seconds: float,
    args: argparse.Namespace,
) -> PhaseRecord:
    print(f"{name}: {rate:g} RSVP/s for {seconds:g} s", flush=True)
    owners = {a.subscription_id: a.user for a in attendees}
    users = {a.user for a in attendees}
    groups = cpu_groups(system)
    peaks: dict[str, int] = {}
    sampler = asyncio.create_task(sample_memory(system, peaks))
    lag_before = await lag_buckets(system)
    database = args.database_name
    backends_before = procstat.backend_ticks_by_role(database)
    cpu_before = procstat.cpu_seconds(groups, procstat.all_stats())
    started = time.time()
    samplers = await profiling(system, name, seconds, args.profile)
    answers = await drive_load(system, attendees, rate, seconds, args.workdir)
    for sampler_process in samplers:
        await sampler_process.wait()
    wanted = {a["user"] for a in answers if 200 <= a["status"] < 300}
    deadline = time.monotonic() + args.drain_seconds
    while time.monotonic() < deadline:
        system.check_alive()
        mails, pushes = mail_arrivals(system, users), push_arrivals(system, owners)
        if wanted <= mails.keys() and wanted <= pushes.keys():
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(SETTLE_S)
    cpu_after = procstat.cpu_seconds(groups, procstat.all_stats())
    backends_after = procstat.backend_ticks_by_role(database)
    window = time.time() - started
    lag_after = await lag_buckets(system)
    sampler.cancel()
    return PhaseRecord(
        name=name,
        rate=rate,
        seconds=seconds,
        answers=answers,
        mails=mail_arrivals(system, users),
        pushes=push_arrivals(system, owners),
        cpu_s={k: cpu_after[k] - cpu_before[k] for k in groups},
        database_cpu_s={
            role: (ticks - backends_before.get(role, 0)) / procstat.TICKS_PER_S
            for role, ticks in backends_after.items()
        },
        window_s=window,
        rss_peak_bytes=peaks,
        lag_buckets={le: n - lag_before.get(le, 0.0) for le, n in lag_after.items()},
    )


async def measure(args: argparse.Namespace) -> tuple[dict[str, Any], list[PhaseRecord]]:
    phases = [
        (name, rate, seconds)
        for name, rate, seconds in (
            ("steady", args.rate, args.seconds),
            ("burst", args.burst_rate, args.burst_seconds),
        )
        if rate > 0 and seconds > 0
    ]
    needed = [int(rate * seconds) for _, rate, seconds in phases]
    async with harness.throwaway_servers() as servers:
        args.database_name = servers.asyncpg_dsn.rsplit("/", 1)[1].split("?")[0]
        versions = await harness.server_versions(servers)
        async with running_system(servers.database_url, servers.broker, args.workdir) as system:
            print(
                f"system up ({', '.join(p.name for p in system.processes)}); preparing "
                f"{sum(needed)} attendees with push subscriptions",
                flush=True,
            )
            attendees = await prepare_attendees(system, servers.asyncpg_dsn, sum(needed), EVENTS)
            records, start = [], 0
            for (name, rate, seconds), count in zip(phases, needed, strict=True):
                batch = attendees[start : start + count]
                start += count
                records.append(await run_phase(system, name, batch, rate, seconds, args))
    settings = {
        "rate": args.rate,
        "seconds": args.seconds,
        "burst_rate": args.burst_rate,
        "burst_seconds": args.burst_seconds,
        "events": EVENTS,
        "runs_text": " + ".join(f"{n}: {r:g}/s x {s:g} s" for n, r, s in phases),
    }
    report: dict[str, Any] = {
        "benchmark": "B2",
        "machine": {**harness.machine(), **versions},
        "settings": settings,
        "figures": {record.name: figures(record) for record in records},
    }
    report["summary"] = b2_report.summary_rows(report["figures"])
    return report, records


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=30, help="steady phase, RSVP/s (0 skips)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--burst-rate", type=float, default=150, help="burst phase (0 skips)")
    parser.add_argument("--burst-seconds", type=float, default=60)
    parser.add_argument("--drain-seconds", type=float, default=120, help="wait for the last ones")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy every process into this folder"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="b2-") as workdir:
        args.workdir = Path(workdir)
        report, records = asyncio.run(measure(args))
    if args.profile is not None:
        print(json.dumps(report["figures"], indent=1)[:4000])
        print(f"profiles in {args.profile}; a profiled run's figures are not written")
        return 0
    path = harness.write_result(NAME, report)
    plots = b2_report.plot(records, harness.RESULTS)
    print(b2_report.text(json.loads(path.read_text())))
    print(f"written to {path.relative_to(harness.ROOT)} and {', '.join(p.name for p in plots)}")
    failures = b2_report.failures(report["figures"])
    for failure in failures:
        print(f"B2 FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
