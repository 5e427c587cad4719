"""What every benchmark needs around it: throw-away servers, worker processes, results.

The broker vhost and the database are made exactly as the tests make theirs
(``tests.support.services``: definitions loaded, migrations applied) and
removed at the end, so a benchmark never touches the development ``rsvp``
vhost or database.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg

from calendar_service.migrate import upgrade_async
from devtools.env import EnvSettings
from shared.management import ManagementClient
from shared.messaging.codec import envelope_to_amqp
from shared.messaging.topology import EVENTS_EXCHANGE, PUSH_RSVP_EVENTS
from tests.support.messages import rsvp_created
from tests.support.processes import reap
from tests.support.services import (
    BrokerEnv,
    create_broker_vhost,
    create_database,
    delete_broker_vhost,
    drop_database,
    new_resource_name,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PUBLISH_WINDOW = 500  # confirms in flight while pre-loading

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Servers:
    env: EnvSettings
    broker: BrokerEnv
    database_url: str  #: SQLAlchemy form, as DATABASE_URL takes it

    @property
    def asyncpg_dsn(self) -> str:
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@asynccontextmanager
async def throwaway_servers() -> AsyncIterator[Servers]:
    """A vhost with the product topology and a migrated database, removed afterwards."""
    env = EnvSettings()
    broker = await create_broker_vhost(env)
    name = new_resource_name()
    try:
        url = await create_database(env, name)
        try:
            await upgrade_async(url)
            yield Servers(env, broker, url)
        finally:
            await drop_database(env, name)
    finally:
        await delete_broker_vhost(env, broker.vhost)


async def preload_rsvps(servers: Servers, count: int, progress: Progress) -> None:
    """Publish ``count`` ``rsvp.created`` as the calendar service does, with confirms.

    The fanout also fills ``push.rsvp_events``, which nobody drains here: it
    is purged so that the broker carries only what is measured.
    """
    connection = await aio_pika.connect(servers.broker.amqp_url("calendar"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        for start in range(0, count, PUBLISH_WINDOW):
            window = range(start, min(start + PUBLISH_WINDOW, count))
            await asyncio.gather(
                *(exchange.publish(envelope_to_amqp(rsvp_created()), "") for _ in window)
            )
            progress(window.stop)
    async with ManagementClient(servers.env.rabbitmq_admin_url) as admin:
        await admin.purge_queue(servers.broker.vhost, PUSH_RSVP_EVENTS.name)


@asynccontextmanager
async def process(
    args: Iterable[str], env: Mapping[str, str] | None = None, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python *args``; stdout piped (JSON lines), stderr to ``log``; killed if left running."""
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=output,
            start_new_session=True,
        )
    finally:
        if log is not None and not isinstance(output, int):
            output.close()
    try:
        yield child
    finally:
        await reap(child)


async def next_line(child: asyncio.subprocess.Process) -> dict[str, Any]:
    """The worker's next JSON line."""
    assert child.stdout is not None
    line = await child.stdout.readline()
    if not line:
        raise RuntimeError(f"worker exited with {await child.wait()} before its result")
    fields: dict[str, Any] = json.loads(line)
    return fields


async def result_of(child: asyncio.subprocess.Process, progress: Progress) -> dict[str, Any]:
    """Follow the worker's progress lines until its result line."""
    while True:
        fields = await next_line(child)
        if "done" in fields:
            progress(int(fields["done"]))
        if "result" in fields:
            result: dict[str, Any] = fields["result"]
            progress(int(result["messages"]))
            return result


def median(values: Iterable[float]) -> float:
    return round(statistics.median(values), 3)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


async def server_versions(servers: Servers) -> dict[str, str]:
    async with ManagementClient(servers.env.rabbitmq_admin_url) as admin:
        rabbitmq = (await admin.overview())["rabbitmq_version"]
    connection = await asyncpg.connect(servers.asyncpg_dsn)
    try:
        postgres = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    return {"rabbitmq": rabbitmq, "postgresql": postgres}


def git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # the result files themselves do not make the build dirty
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return commit + ("-dirty" if changed else "")


def write_result(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    stamped = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": git_commit()}
    path.write_text(json.dumps({**stamped, **figures}, indent=2) + "\n")
    return path
