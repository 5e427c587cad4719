"""Issue 13: what ``python -m push_consumer`` costs per message, draining pre-loaded RSVPs.

    python -m bench.push_consumer_throughput --messages 2000 --runs 3

Each run, on a throw-away vhost and database, with the dev push service
(``devtools.pushsink``: verifies the VAPID JWT, decrypts every push) in a
process of its own that appends each arrival to a file:

1. **push consumer**: N users, each with one subscription at the sink, and N
   ``rsvp.created`` pre-loaded into ``push.rsvp_events``; the real consumer
   process (inbox, subscription read, encrypt + VAPID + POST, ``push.sent``
   follow-up, ack) drains them;
2. **baseline**: a process with no broker and no database
   (``bench.push_baseline``) builds, encrypts, signs and POSTs the same
   pushes to the same subscriptions with the same sender and concurrency.

Both are measured the same way, over the window from the arrival of 10 % of
the pushes to the last: msg/s from the sink's arrival file, and CPU ms per
message of the pushing process from /proc (its start-up is outside the
window). B2's budget for the push consumer is 2 ms of CPU per RSVP.
It writes ``bench/results/push_consumer.json`` and prints the medians.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aio_pika
import asyncpg
import httpx
import typer
from rich.console import Console
from rich.table import Table

from bench import harness, procstat
from bench.harness import Servers
from push_consumer.config import Settings
from push_consumer.vapid import generate_private_key, private_key_text
from shared.management import ManagementClient
from shared.messaging.codec import envelope_to_amqp
from shared.messaging.topology import EMAIL_RSVP_EVENTS, EVENTS_EXCHANGE
from tests.support.messages import rsvp_created
from tests.support.ports import free_port

NAME = "push_consumer"
TARGET_CPU_MS = 2.0  # B2: the push consumer's CPU per RSVP
WARM_UP = 0.1  # the share of pushes before the measured window opens
POLL_S = 0.02

console = Console()


@dataclass(frozen=True)
class Subscriber:
    """A user of the throw-away database with one subscription held by the sink."""

    user_id: uuid.UUID
    subscription: dict[str, Any]  #: the sink's ``{id, endpoint, keys: {p256dh, auth}}``


class Arrivals:
    """Counts the lines the push sink appends to its arrivals file, from now on."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = path.stat().st_size if path.exists() else 0
        self.count = 0

    def poll(self) -> int:
        if self._path.exists():
            with self._path.open("rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offset += len(complete)
            self.count += complete.count(b"\n")
        return self.count


async def drain(
    worker: asyncio.subprocess.Process, arrivals: Arrivals, total: int, timeout_s: float
) -> dict[str, Any]:
    """Wait for ``total`` arrivals; rate and CPU of ``worker`` over the window after warm-up."""
    opened: tuple[float, int, int] | None = None
    deadline = time.monotonic() + timeout_s
    while (count := arrivals.poll()) < total:
        if worker.returncode is not None or time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {total} pushes arrived")
        if opened is None and count >= total * WARM_UP:
            opened = (time.monotonic(), _ticks(worker.pid), count)
        await asyncio.sleep(POLL_S)
    closed = (time.monotonic(), _ticks(worker.pid), count)
    if opened is None:
        raise RuntimeError("every push arrived before the window opened: use more messages")
    seconds, ticks, pushes = (c - o for c, o in zip(closed, opened, strict=True))
    return {
        "messages": pushes,
        "seconds": round(seconds, 3),
        "msg_per_s": round(pushes / seconds, 1),
        "cpu_ms_per_msg": round(ticks / procstat.TICKS_PER_S * 1000 / pushes, 3),
    }


def _ticks(pid: int) -> int:
    stat = procstat.read_stat(pid)
    if stat is None:
        raise RuntimeError(f"process {pid} is gone")
    return stat.own_ticks


@asynccontextmanager
async def push_sink(arrivals: Path) -> AsyncIterator[str]:
    """``python -m devtools.pushsink`` recording arrivals in ``arrivals``; yields its origin."""
    port = free_port()
    env = {"PUSH_SINK_PORT": str(port), "PUSH_SINK_ARRIVALS": str(arrivals)}
    async with harness.process(["-m", "devtools.pushsink"], env):
        origin = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                try:
                    await client.get(f"{origin}/pushes")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield origin


async def subscribe(servers: Servers, origin: str, count: int) -> list[Subscriber]:
    """``count`` users, each with one subscription at the sink, in the database as the API would."""
    async with httpx.AsyncClient() as client:
        made = [(await client.post(f"{origin}/subscriptions")).json() for _ in range(count)]
    subscribers = [Subscriber(uuid.uuid4(), s) for s in made]
    connection = await asyncpg.connect(servers.asyncpg_dsn)
    try:
        await connection.copy_records_to_table(
            "users",
            records=[(s.user_id, f"{s.user_id}@example.com", "Bench", "-") for s in subscribers],
            columns=["id", "email", "name", "password_hash"],
        )
        await connection.copy_records_to_table(
            "push_subscriptions",
            records=[
                (
                    uuid.UUID(s.subscription["id"]),
                    s.user_id,
                    s.subscription["endpoint"],
                    s.subscription["keys"]["p256dh"],
                    s.subscription["keys"]["auth"],
                )
                for s in subscribers
            ],
            columns=["id", "user_id", "endpoint", "p256dh", "auth"],
        )
    finally:
        await connection.close()
    return subscribers


async def preload(servers: Servers, subscribers: list[Subscriber]) -> None:
    """One ``rsvp.created`` per subscriber through the calendar's fanout, with confirms.

    The fanout also fills ``email.rsvp_events``, which nobody drains here: it
    is purged so that the broker carries only what is measured.
    """
    messages = []
    for subscriber in subscribers:
        message = rsvp_created()
        attendee = message.data.attendee.model_copy(update={"user_id": subscriber.user_id})
        data = message.data.model_copy(update={"attendee": attendee})
        messages.append(envelope_to_amqp(message.model_copy(update={"data": data})))
    async with await aio_pika.connect(servers.broker.amqp_url("calendar")) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
        for start in range(0, len(messages), harness.PUBLISH_WINDOW):
            window = messages[start : start + harness.PUBLISH_WINDOW]
            await asyncio.gather(*(exchange.publish(m, "") for m in window))
    async with ManagementClient(servers.env.rabbitmq_admin_url) as admin:
        await admin.purge_queue(servers.broker.vhost, EMAIL_RSVP_EVENTS.name)


def consumer_env(servers: Servers, vapid_key: str, log_level: str) -> dict[str, str]:
    return {
        "APP_ENV": "test",
        "DATABASE_URL": servers.database_url,
        "AMQP_URL": servers.broker.amqp_url("push"),
        "METRICS_PORT": "0",
        "VAPID_PRIVATE_KEY": vapid_key,
        "LOG_LEVEL": log_level,
        "LOG_FORMAT": "json",
    }


async def one_run(
    servers: Servers, messages: int, env: dict[str, str], log: Path
) -> dict[str, Any]:
    """The consumer, then the baseline, against one sink and the same subscriptions."""
    workdir = Path(tempfile.mkdtemp(prefix="bench_push_"))
    arrivals_file = workdir / "arrivals.jsonl"
    async with push_sink(arrivals_file) as origin:
        subscribers = await subscribe(servers, origin, messages)
        await preload(servers, subscribers)
        arrivals = Arrivals(arrivals_file)
        async with harness.process(["-m", "push_consumer"], env, log) as consumer:
            consumed = await drain(consumer, arrivals, messages, timeout_s=600)
            consumer.terminate()
            await asyncio.wait_for(consumer.wait(), 30)

        targets = workdir / "targets.json"
        targets.write_text(
            json.dumps(
                [
                    {"id": s.subscription["id"], "endpoint": s.subscription["endpoint"]}
                    | s.subscription["keys"]
                    for s in subscribers
                ]
            )
        )
        concurrency = str(Settings.model_fields["concurrency"].default)
        arrivals = Arrivals(arrivals_file)
        args = ["-m", "bench.push_baseline", str(targets), concurrency]
        async with harness.process(args, env, log) as sender:
            baseline = await drain(sender, arrivals, messages, timeout_s=600)
            await asyncio.wait_for(sender.wait(), 30)
    return {"push_consumer": consumed, "baseline": baseline}


async def measure(messages: int, runs: int, log_level: str) -> dict[str, Any]:
    log = Path(tempfile.gettempdir()) / "bench_push_consumer.log"
    log.unlink(missing_ok=True)
    env_key = private_key_text(generate_private_key())
    results = []
    async with harness.throwaway_servers() as servers:
        versions = await harness.server_versions(servers)
        env = consumer_env(servers, env_key, log_level)
        for run in range(runs):
            with console.status(f"run {run + 1} of {runs}: {messages} pushes, consumer + baseline"):
                results.append(await one_run(servers, messages, env, log))
    defaults = Settings()
    return {
        "benchmark": "push consumer cost",
        "machine": {**harness.machine(), **versions},
        "settings": {
            "messages": messages,
            "runs": runs,
            "prefetch": defaults.prefetch,
            "concurrency": defaults.concurrency,
            "log_level": log_level,
        },
        "runs": results,
        "median": medians(results),
        "targets": {"cpu_ms_per_msg": TARGET_CPU_MS},
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    figures = {
        f"{variant}_{figure}": harness.median(float(run[variant][figure]) for run in runs)
        for variant in ("push_consumer", "baseline")
        for figure in ("msg_per_s", "cpu_ms_per_msg")
    }
    figures["cpu_ratio"] = harness.median(
        run["push_consumer"]["cpu_ms_per_msg"] / run["baseline"]["cpu_ms_per_msg"] for run in runs
    )
    figures["rate_ratio"] = harness.median(
        run["push_consumer"]["msg_per_s"] / run["baseline"]["msg_per_s"] for run in runs
    )
    return figures


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The row ``bench.summary`` puts in bench/results/README.md."""
    median = report["median"]
    cpu = median["push_consumer_cpu_ms_per_msg"]
    return [
        {
            "what": "push consumer, inbox + subscription read + follow-up, CPU per message",
            "figure": f"{cpu:.2f} ms CPU/msg, {median['push_consumer_msg_per_s']:.0f} msg/s",
            "baseline": f"no broker, no database, same encrypt + VAPID + POST: "
            f"{median['baseline_cpu_ms_per_msg']:.2f} ms CPU/msg, "
            f"{median['baseline_msg_per_s']:.0f} msg/s",
            "ratio": median["rate_ratio"],
            "target_text": f"<= {TARGET_CPU_MS} ms CPU/msg (B2)",
            "met": cpu <= TARGET_CPU_MS,
        }
    ]


def print_summary(report: dict[str, Any], path: Path) -> None:
    median = report["median"]
    table = Table(
        title=f"push consumer, median of {report['settings']['runs']} run(s), "
        f"{report['settings']['messages']} messages"
    )
    for column in ("variant", "msg/s", "CPU ms/msg"):
        table.add_column(column)
    for variant in ("push_consumer", "baseline"):
        table.add_row(
            variant,
            f"{median[f'{variant}_msg_per_s']:.0f}",
            f"{median[f'{variant}_cpu_ms_per_msg']:.2f}",
        )
    console.print(table)
    console.print(
        f"consumer / baseline: CPU {median['cpu_ratio']:.2f}x, rate {median['rate_ratio']:.2f}x; "
        f"target <= {TARGET_CPU_MS} ms CPU/msg"
    )
    console.print(f"written to {path.relative_to(harness.ROOT)}")


def main(
    messages: Annotated[int, typer.Option(min=50, help="pushes per variant and run")] = 2_000,
    runs: Annotated[int, typer.Option(min=1, help="runs; medians are reported")] = 1,
    log_level: Annotated[str, typer.Option(help="the consumer's LOG_LEVEL")] = "INFO",
) -> None:
    report = asyncio.run(measure(messages, runs, log_level))
    report["summary"] = summary_rows(report)
    path = harness.write_result(NAME, report)
    print_summary(json.loads(path.read_text()), path)


if __name__ == "__main__":
    typer.run(main)
