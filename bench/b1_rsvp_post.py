"""``python -m bench.b1_rsvp_post`` (B1): our RSVP POST against the plain FastAPI floor.

The floor is the design notes' ``api_floor.py`` (FastAPI + asyncpg, upsert and
outbox row, no auth), run as it is with uvicorn from its own folder
(``--floor-dir``; never copied here) against a database of its own. Ours is
the API process of ``devtools.run.plan()`` on a throw-away database and vhost,
with 200 attendees x 100 events, a JWT and a fresh ``Idempotency-Key`` per
request (``bench/b1_rsvp.lua``). Both are driven closed-loop by
``wrk -t1 -c64``, alternated floor/ours/floor/ours; then ours at half its
rate, open loop (``bench.b2_load``), for the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import harness
from bench.announcement import create_event, seed_users, spawn, stop, until_ready
from bench.b2_figures import percentiles
from calendar_service.config import DEV_JWT_SECRET
from calendar_service.security import TokenIssuer
from devtools import run
from devtools.env import EnvSettings, _postgres_dsn
from tests.support.ports import free_port
from tests.support.services import create_database, drop_database, new_resource_name

NAME = "b1"
SCRIPT = harness.ROOT / "bench" / "b1_rsvp.lua"
USERS, EVENTS = 200, 100
OPEN_LOOP_P99_MS = 50.0
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkRun:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: str


def parse_wrk(output: str) -> WrkRun:
    """Requests/sec, the ``--latency`` percentiles, non-2xx answers and socket errors."""

    def latency(percent: str) -> float:
        found = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        return round(float(found[1]) * _UNITS_MS[found[2]], 2) if found else math.nan

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:.*", output)
    return WrkRun(
        requests_per_s=float(rate[1]) if rate else 0.0,
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
        errors=errors[0] if errors else "",
    )


async def wrk(url: str, script: Path, args: argparse.Namespace, env: dict[str, str]) -> WrkRun:
    command = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}", "--latency"]
    child = await asyncio.create_subprocess_exec(
        *command,
        "-s",
        str(script),
        url,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await child.communicate())[0].decode()
    if child.returncode != 0:
        raise RuntimeError(f"wrk failed ({child.returncode}):\n{output}")
    return parse_wrk(output)


@asynccontextmanager
async def floor_server(floor_dir: Path) -> AsyncIterator[str]:
    """``api_floor:app`` under uvicorn (one worker, uvloop) on a database of its own."""
    env = EnvSettings()
    name = new_resource_name()
    await create_database(env, name)
    port = free_port()
    try:
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "uvicorn", "--app-dir", str(floor_dir), "api_floor:app"),
            *("--loop", "uvloop", "--workers", "1", "--no-access-log"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            env={**os.environ, "FLOOR_DSN": _postgres_dsn(env.database_url, name)},
        )
        try:
            await until_ready(f"http://127.0.0.1:{port}/openapi.json")
            yield f"http://127.0.0.1:{port}"
        finally:
            await stop(server)
    finally:
        await drop_database(env, name)


@asynccontextmanager
async def our_api(
    servers: harness.Servers, extra_env: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """The API process of `make run`'s plan, alone, on the benchmark's database and vhost."""
    [api] = [p for p in run.plan(0, smtp_external=True) if p.name == "api"]
    port = free_port()
    env = {
        "DATABASE_URL": servers.database_url,
        "AMQP_URL": servers.broker.amqp_url("calendar"),
        "PORT": str(port),
        # 200 users answer thousands of times a run: the per-user change limit
        # (30/hour) would turn most answers into 429s. It is still counted, so
        # the admission round trip stays in the measured cost.
        "RSVP_CHANGE_LIMIT": "1000000/hour",
        **(extra_env or {}),
    }
    process = await spawn(api.module, env)
    try:
        await until_ready(f"http://127.0.0.1:{port}/readyz")
        yield f"http://127.0.0.1:{port}"
    finally:
        await stop(process)


async def seed(api: str, dsn: str) -> tuple[list[str], list[str]]:
    """``USERS`` attendees' tokens and ``EVENTS`` events' ids."""
    issuer = TokenIssuer(DEV_JWT_SECRET, timedelta(hours=3))
    users = await seed_users(dsn, "b1", USERS + 1)
    tokens = [issuer.issue(user_id, "user") for user_id, _ in users]
    organizer = {"Authorization": f"Bearer {tokens.pop()}"}
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        events = [await create_event(client, organizer, f"B1 night {n}") for n in range(EVENTS)]
    return tokens, events


async def open_loop_p99(
    api: str, tokens: list[str], events: list[str], rate: float, args: argparse.Namespace
) -> dict[str, Any]:
    """Ours at ``rate`` offered open loop for ``--open-loop-seconds``: latency percentiles."""
    rate = round(rate, 1)  # as the load worker reads it: it asks for int(rate * seconds)
    count = int(rate * args.open_loop_seconds) + 1
    attendees = [
        {"user": str(n), "token": random.choice(tokens), "event_id": random.choice(events)}
        for n in range(count)
    ]
    plan, out = args.workdir / "open_loop.json", args.workdir / "open_loop.jsonl"
    plan.write_text(json.dumps(attendees))
    command = ["-m", "bench.b2_load", "--api", api, "--rate", f"{rate:.1f}"]
    command += ["--seconds", str(args.open_loop_seconds), "--attendees", str(plan)]
    log = args.workdir / "open_loop.log"
    async with harness.process([*command, "--out", str(out)], log=log) as load:
        try:
            await harness.next_line(load)
        except RuntimeError:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    failed = sum(1 for a in answers if not 200 <= a["status"] < 300)
    return {"rate_per_s": round(rate, 1), "failed": failed} | percentiles(
        a["latency_ms"] for a in answers
    )


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    floor_script = args.floor_dir / "floor.lua"
    attendees = args.workdir / "attendees.txt"
    runs: dict[str, list[WrkRun]] = {"floor": [], "ours": []}
    async with (
        harness.throwaway_servers() as servers,
        our_api(servers) as ours,
        floor_server(args.floor_dir) as floor,
    ):
        tokens, events = await seed(ours, servers.asyncpg_dsn)
        lines = [f"token {t}" for t in tokens] + [f"event {e}" for e in events]
        attendees.write_text("\n".join(lines) + "\n")
        for round_ in range(args.rounds):
            for side, url, script in (("floor", floor, floor_script), ("ours", ours, SCRIPT)):
                result = await wrk(url, script, args, {"B1_ATTENDEES": str(attendees)})
                print(f"round {round_ + 1} {side}: {result}", flush=True)
                runs[side].append(result)
        ours_rate = statistics.median(r.requests_per_s for r in runs["ours"])
        open_loop = None
        if args.open_loop_seconds > 0:
            open_loop = await open_loop_p99(ours, tokens, events, ours_rate / 2, args)
        versions = await harness.server_versions(servers)
    return report(runs, open_loop, args, versions)


def report(
    runs: dict[str, list[WrkRun]],
    open_loop: dict[str, Any] | None,
    args: argparse.Namespace,
    versions: dict[str, str],
) -> dict[str, Any]:
    def side(name: str) -> dict[str, Any]:
        return {
            "requests_per_s": round(statistics.median(r.requests_per_s for r in runs[name]), 1),
            "p99_ms": round(statistics.median(r.p99_ms for r in runs[name]), 1),
            "runs": [asdict(r) for r in runs[name]],
        }

    floor, ours = side("floor"), side("ours")
    ratio = round(ours["requests_per_s"] / max(floor["requests_per_s"], 1e-9), 3)
    summary = [
        {
            "what": f"B1 RSVP POST, closed loop (wrk -c{args.connections}), vs the FastAPI floor",
            "figure": f"{ours['requests_per_s']} req/s (p99 {ours['p99_ms']} ms)",
            "baseline": f"floor {floor['requests_per_s']} req/s (p99 {floor['p99_ms']} ms)",
            "ratio": ratio,
            "target": 1.0,
        }
    ]
    if open_loop is not None:
        summary.append(
            {
                "what": f"B1 RSVP POST, open loop at half that rate ({open_loop['rate_per_s']}/s)",
                "figure": f"{open_loop.get('p99_ms')} ms (p50 {open_loop.get('p50_ms')} ms)",
                "baseline": "-",
                "ratio": None,
                "target_text": f"<= {OPEN_LOOP_P99_MS:g} ms",
                "met": open_loop.get("p99_ms", math.inf) <= OPEN_LOOP_P99_MS,
            }
        )
    return {
        "benchmark": "B1",
        "machine": {**harness.machine(), **versions},
        "settings": {
            "runs_text": f"{args.rounds} x A/B, wrk -t1 -c{args.connections} -d{args.duration}",
            "users": USERS,
            "events": EVENTS,
            "floor_dir": str(args.floor_dir),
        },
        "figures": {"floor": floor, "ours": ours, "ratio": ratio, "open_loop": open_loop},
        "summary": summary,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--floor-dir",
        type=Path,
        default=harness.ROOT.parent / "shared" / "bench",
        help="folder of api_floor.py and floor.lua (default ../shared/bench)",
    )
    parser.add_argument("-d", "--duration", default="15s", help="each wrk run (wrk -d)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2, help="A/B pairs")
    parser.add_argument("--open-loop-seconds", type=float, default=15, help="0 skips")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.floor_dir / "api_floor.py").exists():
        print(f"B1: no api_floor.py in {args.floor_dir} (give --floor-dir)", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("B1 needs wrk: `python -m devtools.env wrk` installs it", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="b1-") as workdir:
        args.workdir = Path(workdir)
        result = asyncio.run(measure(args))
    path = harness.write_result(NAME, result)
    for row in result["summary"]:
        print(f"  {row['what']}: {row['figure']}; {row['baseline']}")
    print(f"ours/floor {result['figures']['ratio']}x; written to {path.relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
