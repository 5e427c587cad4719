"""``python -m bench.reference_load``: the reference day, as an arrival rate, on one machine.

The scaling notes behind the product set a reference load of 15 million hits a
day over 5 million records, and ask for five times that. This benchmark offers
the day's mix (``bench.mixed_load.MIX``: mostly event pages, then RSVPs, lists,
own RSVPs and sign-ins) open loop, in rising steps, to the whole system as
`make run` starts it, with two API replicas behind nginx (the repository's
config), and every process, both sinks and the load generator on the same
2 cores. For each step it reads each process's CPU from /proc and the answers'
latencies; the last step that meets the bar (p99 <= 500 ms, >= 99 % 2xx) is
what one machine sustains, and the process using the most CPU at the first
step that misses it is the one that saturates first. From the measured CPU
per request it works out how many machines of this size the reference load
needs (README "Capacity").

With ``--prometheus`` it also runs Debian's Prometheus scraping every process
and renders the dashboard's panels for the run (``make dashboard-snapshot``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench import harness, procstat
from bench.b2_end_to_end import cpu_groups
from bench.b2_figures import percentiles
from bench.b2_system import System, prepare_attendees, running_system
from bench.mixed_load import MIX
from calendar_service.config import DEV_JWT_SECRET
from calendar_service.security import TokenIssuer
from tests.support.api import SUITE_LIMITS
from tests.support.nginx import nginx_in_front_of

NAME = "reference_load"
DAILY_HITS = 15_000_000
TIMES = 5
#: Busiest hour over the day's mean: an assumption (README "Capacity"), not a measurement.
PEAK_FACTOR = 3.0
P99_BAR_MS = 500.0
ANSWERED_BAR = 0.99
EVENTS = 200
ATTENDEES = 600
ACCOUNTS = 8
PASSWORD = "reference day"  # noqa: S105 - the benchmark's throw-away accounts


async def register_accounts(api: str, count: int) -> list[dict[str, str]]:
    """Accounts that sign in during the run: real argon2 hashes, as users have."""
    accounts = []
    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        for n in range(count):
            email = f"reference-{n}-{time.time_ns()}@example.com"
            made = await client.post(
                "/auth/register", json={"email": email, "password": PASSWORD, "name": f"Ref {n}"}
            )
            made.raise_for_status()
            accounts.append({"email": email, "password": PASSWORD})
    return accounts


async def existing_rsvps(api: str, attendees: list[dict[str, str]]) -> list[dict[str, str]]:
    """One RSVP per attendee, so that reading one's own and the lists have rows."""
    rsvps = []
    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        for attendee in attendees:
            made = await client.post(
                f"/events/{attendee['event_id']}/rsvps",
                json={"status": "going"},
                headers={"Authorization": f"Bearer {attendee['token']}"},
            )
            made.raise_for_status()
            rsvps.append({"id": made.json()["id"], "token": attendee["token"]})
    return rsvps


async def organizer_token(dsn: str) -> str:
    """A token of the events' organizer: only they (and admins) list who answered."""
    connection = await asyncpg.connect(dsn)
    try:
        organizer = await connection.fetchval("SELECT organizer_id FROM events LIMIT 1")
    finally:
        await connection.close()
    return TokenIssuer(DEV_JWT_SECRET, timedelta(hours=3)).issue(organizer, "user")


def _reaped_cpu_s() -> float:
    """CPU of this process's children that have ended: the load generator of a step
    (the system's processes, nginx and Prometheus live on, so they are not in it)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def groups_of(system: System) -> dict[str, list[int]]:
    """CPU groups: the system's processes (API replicas apart), PostgreSQL, RabbitMQ,
    Redis and nginx; the sinks and the load generator are not the system."""
    groups = cpu_groups(system)
    stats = procstat.all_stats()
    groups["redis"] = [s.pid for s in stats.values() if s.comm == "redis-server"]
    groups["nginx"] = [
        s.pid
        for s in stats.values()
        if s.comm == "nginx" and (s.ppid not in stats or stats[s.ppid].comm != "nginx")
    ]
    return groups


async def offer(
    api: str, plan_file: Path, rate: float, seconds: float, workdir: Path, generators: int = 1
) -> list[dict[str, Any]]:
    """``rate`` offered by ``generators`` processes, each a share of it with a seed of its own."""

    async def one(index: int) -> list[dict[str, Any]]:
        out = workdir / f"answers-{rate:g}-{index}.jsonl"
        share = rate / generators
        command = ["-m", "bench.mixed_load", "--api", api, "--rate", f"{share:g}"]
        command += ["--seconds", f"{seconds:g}", "--plan", str(plan_file), "--out", str(out)]
        # a seed per step and generator: the same seed would answer the last step's RSVPs again
        # (200 unchanged) instead of making new ones (201, a mail and a push each)
        command += ["--seed", str(int(rate) * 100 + index)]
        async with harness.process(command, log=workdir / "load.log") as load:
            await harness.next_line(load)
        return [json.loads(line) for line in out.read_text().splitlines()]

    shares = await asyncio.gather(*(one(index) for index in range(generators)))
    return [answer for share in shares for answer in share]


def step_figures(
    rate: float, seconds: float, answers: list[dict[str, Any]], cpu_s: dict[str, float]
) -> dict[str, Any]:
    answered = [a for a in answers if 200 <= a["status"] < 300]
    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[str(answer["status"])] = statuses.get(str(answer["status"]), 0) + 1
    by_kind = {
        kind: percentiles(a["latency_ms"] for a in answers if a["kind"] == kind) for kind in MIX
    }
    overall = percentiles(a["latency_ms"] for a in answers)
    share = len(answered) / max(len(answers), 1)
    cores = {name: round(seconds_used / seconds, 3) for name, seconds_used in cpu_s.items()}
    total_cpu_ms = 1000 * sum(cpu_s.values())
    return {
        "offered_per_s": rate,
        "answered_2xx_per_s": round(len(answered) / seconds, 1),
        "answered_2xx_share": round(share, 4),
        "statuses": statuses,
        "latency_ms": overall,
        "latency_ms_by_kind": by_kind,
        "cores_by_process": cores,
        "cores_total": round(sum(cores.values()), 3),
        "cpu_ms_per_request": round(total_cpu_ms / max(len(answers), 1), 3),
        "cpu_ms_per_request_by_process": {
            name: round(1000 * used / max(len(answers), 1), 3) for name, used in cpu_s.items()
        },
        "met": share >= ANSWERED_BAR and overall.get("p99_ms", math.inf) <= P99_BAR_MS,
    }


def capacity(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """What one machine sustains, what saturates first, and the machines the load needs."""
    met = [s for s in steps if s["met"]]
    missed = next((s for s in steps if not s["met"]), None)
    sustained = max((s["answered_2xx_per_s"] for s in met), default=0.0)
    busiest = missed or (steps[-1] if steps else None)
    first = max(busiest["cores_by_process"].items(), key=lambda item: item[1]) if busiest else None
    cost_ms = statistics.median(s["cpu_ms_per_request"] for s in met) if met else None
    mean_per_s = DAILY_HITS * TIMES / 86_400
    peak_per_s = mean_per_s * PEAK_FACTOR
    return {
        "sustained_per_s": sustained,
        "first_to_saturate": {"process": first[0], "cores": first[1]} if first else None,
        "saturating_step_per_s": busiest["offered_per_s"] if busiest else None,
        "cpu_ms_per_request": cost_ms,
        "reference": {
            "hits_per_day": DAILY_HITS * TIMES,
            "mean_per_s": round(mean_per_s, 1),
            "peak_factor": PEAK_FACTOR,
            "peak_per_s": round(peak_per_s, 1),
            "machines_for_mean": math.ceil(mean_per_s / sustained) if sustained else None,
            "machines_for_peak": math.ceil(peak_per_s / sustained) if sustained else None,
            "cores_for_peak_by_cost": round(peak_per_s * cost_ms / 1000, 1) if cost_ms else None,
        },
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    workdir: Path = args.workdir
    limits = {name.upper(): limit for name, limit in SUITE_LIMITS.items()}
    async with AsyncExitStack() as stack:
        servers = await stack.enter_async_context(harness.throwaway_servers())
        versions = await harness.server_versions(servers)
        system = await stack.enter_async_context(
            running_system(
                servers.database_url, servers.broker, workdir, api_replicas=2, env_extra=limits
            )
        )
        ports = [urlsplit(url).port or 80 for url in system.api_replicas]
        (workdir / "nginx").mkdir()
        nginx = await stack.enter_async_context(nginx_in_front_of(ports, workdir / "nginx"))
        print(f"system up: {len(ports)} API replicas behind nginx at {nginx.url}", flush=True)
        attendees = await prepare_attendees(system, servers.asyncpg_dsn, ATTENDEES, EVENTS)
        plan = {
            "organizer": await organizer_token(servers.asyncpg_dsn),
            "attendees": [a.as_json() for a in attendees],
            "events": sorted({a.event_id for a in attendees}),
            "rsvps": await existing_rsvps(nginx.url, [a.as_json() for a in attendees[:200]]),
            "accounts": await register_accounts(nginx.url, ACCOUNTS),
        }
        plan_file = workdir / "plan.json"
        plan_file.write_text(json.dumps(plan))
        prometheus = None
        if args.prometheus:
            from bench.prometheus import scraping

            jobs = {"api": [f"127.0.0.1:{port}" for port in ports]}
            jobs |= {
                p.name: [f"127.0.0.1:{p.env['METRICS_PORT']}"]
                for p in system.measured
                if "METRICS_PORT" in p.env
            }
            prometheus = await stack.enter_async_context(
                scraping(
                    jobs,
                    servers.env.rabbitmq_prometheus_url,
                    servers.broker.vhost,
                    workdir / "prom",
                )
            )
            await asyncio.sleep(5)  # a few scrapes before the load, for rates to start from
        started = time.time()
        steps: list[dict[str, Any]] = []
        for rate in args.rates:
            groups = groups_of(system)
            before = procstat.cpu_seconds(groups, procstat.all_stats())
            generator_before = _reaped_cpu_s()
            answers = await offer(
                nginx.url, plan_file, rate, args.step_seconds, workdir, args.generators
            )
            generator_s = _reaped_cpu_s() - generator_before
            after = procstat.cpu_seconds(groups, procstat.all_stats())
            system.check_alive()
            used = {name: after[name] - before.get(name, 0.0) for name in after}
            step = step_figures(rate, args.step_seconds, answers, used)
            step["load_generator_cores"] = round(generator_s / args.step_seconds, 3)
            step["machine_cores"] = round(step["cores_total"] + step["load_generator_cores"], 3)
            steps.append(step)
            print(
                f"  {rate:g}/s offered: {step['answered_2xx_per_s']}/s 2xx, "
                f"p99 {step['latency_ms'].get('p99_ms')} ms, {step['cores_total']} cores, "
                f"{step['cpu_ms_per_request']} ms CPU/request, load generator "
                f"{step['load_generator_cores']} cores{'' if step['met'] else ' (missed)'}",
                flush=True,
            )
            if not step["met"] and not args.all_steps:
                break
        ended = time.time()
        snapshot: list[str] = []
        if prometheus is not None:
            from devtools.dashboard import render

            await asyncio.sleep(2 * 2)  # the last scrapes
            pictures = await asyncio.to_thread(
                render, prometheus, started - 5, ended + 4, harness.RESULTS / "dashboard", step=2
            )
            snapshot = [str(p.relative_to(harness.ROOT)) for p in pictures]
    steps_text = ", ".join(f"{r:g}" for r in args.rates)
    return {
        "benchmark": "reference load",
        "machine": {**harness.machine(), **versions},
        "settings": {
            "mix": MIX,
            "rates": args.rates,
            "step_seconds": args.step_seconds,
            "api_replicas": 2,
            "load_generators": args.generators,
            "bar": f"p99 <= {P99_BAR_MS:g} ms and >= {ANSWERED_BAR:.0%} answered 2xx",
            "runs_text": f"steps {steps_text}/s x {args.step_seconds:g} s",
        },
        "figures": {"steps": steps, "capacity": capacity(steps), "dashboard": snapshot},
        "summary": summary(steps),
    }


def summary(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = capacity(steps)
    first = found["first_to_saturate"] or {}
    reference = found["reference"]
    return [
        {
            "what": "reference mix, 2 API replicas behind nginx: sustained on this machine",
            "figure": f"{found['sustained_per_s']} req/s "
            f"({found['cpu_ms_per_request']} ms CPU/req)",
            "baseline": f"first to saturate: {first.get('process')} ({first.get('cores')} cores)",
            "ratio": None,
            "target_text": "stated",
        },
        {
            "what": f"15M hits/day x {TIMES} (peak x{PEAK_FACTOR:g}): machines of this size",
            "figure": f"{reference['machines_for_peak']} "
            f"(mean alone: {reference['machines_for_mean']})",
            "baseline": f"peak {reference['peak_per_s']} req/s",
            "ratio": None,
            "target_text": "stated",
        },
    ]


def plot(report: dict[str, Any], results: Path, name: str = NAME) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["figures"]["steps"]
    names = sorted({n for s in steps for n in s["cores_by_process"]})
    figure, (cores_axes, rate_axes) = plt.subplots(1, 2, figsize=(13, 4.5))
    labels = [f"{s['offered_per_s']:g}/s" for s in steps]
    bottom = [0.0] * len(steps)
    for process in names:
        values = [s["cores_by_process"].get(process, 0.0) for s in steps]
        cores_axes.bar(labels, values, bottom=bottom, label=process)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    generator = [s["load_generator_cores"] for s in steps]
    cores_axes.bar(
        labels,
        generator,
        bottom=bottom,
        label="load generator (not the system)",
        color="lightgrey",
        hatch="//",
    )
    cores_axes.axhline(2.0, color="black", linewidth=0.8, linestyle="--")
    cores_axes.set_title("CPU by process per offered rate (2 cores)")
    cores_axes.set_ylabel("cores")
    cores_axes.legend(fontsize=7, ncol=2)
    offered = [s["offered_per_s"] for s in steps]
    rate_axes.plot(offered, [s["answered_2xx_per_s"] for s in steps], marker="o", label="2xx/s")
    rate_axes.plot(offered, offered, linestyle=":", color="grey", label="offered")
    p99 = rate_axes.twinx()
    p99.plot(offered, [s["latency_ms"].get("p99_ms") for s in steps], color="red", marker="x")
    p99.set_ylabel("p99 ms", color="red")
    rate_axes.set_title("answered vs offered, and p99")
    rate_axes.set_xlabel("offered req/s")
    rate_axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    path = results / f"{name}.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[100.0, 150.0, 200.0, 250.0, 300.0],
        help="offered requests a second, one step each, comma-separated",
    )
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument(
        "--generators",
        type=int,
        default=2,
        help="load generator processes sharing each rate (one Python process tops out near 200/s)",
    )
    parser.add_argument(
        "--all-steps", action="store_true", help="go on past the first step that misses the bar"
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="scrape with Debian's Prometheus and render the dashboard's panels",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reference-") as workdir:
        args.workdir = Path(workdir)
        report = asyncio.run(measure(args))
    # a snapshot's steps are chosen for the pictures, not for the capacity figure
    name = "dashboard_snapshot" if args.prometheus else NAME
    path = harness.write_result(name, report)
    picture = plot(report, harness.RESULTS, name)
    found = report["figures"]["capacity"]
    print(json.dumps(found, indent=2))
    print(f"written to {path.relative_to(harness.ROOT)} and {picture.name}")
    if report["figures"]["dashboard"]:
        print("dashboard: " + ", ".join(report["figures"]["dashboard"][:1]))
    if not report["figures"]["steps"]:
        print("no step ran", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
