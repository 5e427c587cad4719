"""B3: how fast ``python -m email_consumer`` drains pre-loaded RSVPs into an SMTP sink.

    python -m bench.email_consumer_throughput --messages 10000 --runs 3

Each run, on a throw-away vhost and database:

1. **email consumer**: N ``rsvp.created`` pre-loaded into ``email.rsvp_events``;
   the real consumer process (inbox, ``email.sent`` follow-up, .ics, ack after
   send) drains them into an aiosmtpd sink in its own process, which times
   the first to the last mail;
2. **baseline**: a process with no broker builds and sends the same emails over
   the same number of SMTP connections, timed by the same sink;
3. **no-op** (unless ``--no-noop``): the runtime with a handler that does
   nothing, against a bare aio-pika consumer, both draining N messages.

It writes ``bench/results/email_consumer.json`` and prints the medians.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import harness
from bench.harness import Servers
from email_consumer.config import Settings
from tests.support.email_consumer import email_env
from tests.support.ports import free_port

NAME = "email_consumer"
TARGET_RATIO = 0.85  # B3: the consumer against the no-broker limit
TARGET_NOOP_RATIO = 0.8  # B3: the no-op runtime against bare aio-pika

console = Console()


class Phases:
    """One progress bar per phase of a run."""

    def __init__(self, progress: Progress, messages: int) -> None:
        self._progress = progress
        self._messages = messages

    def start(self, description: str) -> harness.Progress:
        task = self._progress.add_task(description, total=self._messages)
        return lambda done: self._progress.update(task, completed=done)


async def email_consumer_run(
    servers: Servers, messages: int, pool: int, log_level: str, log: Path, phases: Phases
) -> dict[str, Any]:
    await harness.preload_rsvps(servers, messages, phases.start("pre-load"))
    port = free_port()
    settings = Settings(
        app_env="test",
        database_url=servers.database_url,
        amqp_url=servers.broker.amqp_url("email"),
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_pool_size=pool,
        metrics_port=0,
    )
    env = {**email_env(settings), "LOG_LEVEL": log_level, "LOG_FORMAT": "json"}
    async with harness.process(["-m", "bench.sink", str(port), str(messages)]) as sink:
        await harness.next_line(sink)  # listening
        consumer_args = ["-m", "email_consumer"]
        async with harness.process(consumer_args, env, log) as consumer:
            result = await harness.result_of(sink, phases.start("email consumer"))
            consumer.terminate()
            await asyncio.wait_for(consumer.wait(), 30)
    return result


async def baseline_run(
    messages: int, pool: int, concurrency: int, phases: Phases
) -> dict[str, Any]:
    port = free_port()
    async with harness.process(["-m", "bench.sink", str(port), str(messages)]) as sink:
        await harness.next_line(sink)
        sender_args = ["-m", "bench.email_baseline", str(messages), str(port)]
        async with harness.process([*sender_args, str(pool), str(concurrency)]) as sender:
            result = await harness.result_of(sink, phases.start("no-broker baseline"))
            await asyncio.wait_for(sender.wait(), 30)
    return result


async def noop_run(servers: Servers, kind: str, messages: int, phases: Phases) -> dict[str, Any]:
    await harness.preload_rsvps(servers, messages, phases.start("pre-load"))
    args = ["-m", "bench.noop_consumers", kind, str(messages)]
    args += [servers.broker.amqp_url("email"), servers.asyncpg_dsn]
    async with harness.process(args) as worker:
        result = await harness.result_of(worker, phases.start(f"no-op: {kind}"))
        await asyncio.wait_for(worker.wait(), 30)
    return result


async def measure(messages: int, runs: int, noop: bool, log_level: str) -> dict[str, Any]:
    defaults = Settings()
    pool, concurrency = defaults.smtp_pool_size, defaults.concurrency
    log = Path(tempfile.gettempdir()) / "bench_email_consumer.log"
    log.unlink(missing_ok=True)
    results: list[dict[str, Any]] = []
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        phases = Phases(progress, messages)
        async with harness.throwaway_servers() as servers:
            versions = await harness.server_versions(servers)
            for _ in range(runs):
                run: dict[str, Any] = {
                    "email_consumer": await email_consumer_run(
                        servers, messages, pool, log_level, log, phases
                    ),
                    "baseline": await baseline_run(messages, pool, concurrency, phases),
                }
                if noop:
                    run["noop_runtime"] = await noop_run(servers, "runtime", messages, phases)
                    run["noop_aio_pika"] = await noop_run(servers, "aio-pika", messages, phases)
                results.append(run)
    return {
        "benchmark": "B3 email consumer throughput",
        "machine": {**harness.machine(), **versions},
        "settings": {
            "messages": messages,
            "runs": runs,
            "smtp_pool_size": pool,
            "prefetch": defaults.prefetch,
            "concurrency": concurrency,
            "log_level": log_level,
        },
        "runs": results,
        "median": medians(results),
        "targets": {"ratio": TARGET_RATIO, "noop_ratio": TARGET_NOOP_RATIO},
    }


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    def of(variant: str) -> list[float]:
        return [float(run[variant]["msg_per_s"]) for run in runs if variant in run]

    figures = {f"{variant}_msg_per_s": harness.median(of(variant)) for variant in runs[0]}
    figures["ratio"] = harness.median(
        c / b for c, b in zip(of("email_consumer"), of("baseline"), strict=True)
    )
    if "noop_runtime" in runs[0]:
        figures["noop_ratio"] = harness.median(
            r / a for r, a in zip(of("noop_runtime"), of("noop_aio_pika"), strict=True)
        )
    return figures


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows ``bench.summary`` puts in bench/results/README.md."""
    median = report["median"]
    rows = [
        {
            "what": "email consumer, inbox + follow-up + .ics, K=4 (B3)",
            "figure": f"{median['email_consumer_msg_per_s']:.0f} msg/s",
            "baseline": f"no broker, same build + send, K=4: "
            f"{median['baseline_msg_per_s']:.0f} msg/s",
            "ratio": median["ratio"],
            "target": TARGET_RATIO,
        }
    ]
    if "noop_ratio" in median:
        rows.append(
            {
                "what": "runtime, no-op handler (inbox + ack)",
                "figure": f"{median['noop_runtime_msg_per_s']:.0f} msg/s",
                "baseline": "bare aio-pika, ack only: "
                f"{median['noop_aio_pika_msg_per_s']:.0f} msg/s",
                "ratio": median["noop_ratio"],
                "target": TARGET_NOOP_RATIO,
            }
        )
    return rows


def print_summary(report: dict[str, Any], path: Path) -> None:
    table = Table(
        title=f"B3, median of {report['settings']['runs']} run(s), "
        f"{report['settings']['messages']} messages"
    )
    for column in ("what", "figure", "baseline", "ratio", "target"):
        table.add_column(column)
    for row in report["summary"]:
        met = "met" if row["ratio"] >= row["target"] else "NOT MET"
        table.add_row(
            row["what"],
            row["figure"],
            row["baseline"],
            f"{row['ratio']:.2f}x",
            f">= {row['target']}x {met}",
        )
    console.print(table)
    console.print(f"written to {path.relative_to(harness.ROOT)}")


def main(
    messages: Annotated[int, typer.Option(min=10, help="messages per variant and run")] = 10_000,
    runs: Annotated[int, typer.Option(min=1, help="runs; medians are reported")] = 1,
    noop: Annotated[bool, typer.Option(help="also the no-op runtime vs bare aio-pika")] = True,
    log_level: Annotated[str, typer.Option(help="the consumer's LOG_LEVEL")] = "INFO",
) -> None:
    report = asyncio.run(measure(messages, runs, noop, log_level))
    report["summary"] = summary_rows(report)
    path = harness.write_result(NAME, report)
    print_summary(json.loads(path.read_text()), path)


if __name__ == "__main__":
    typer.run(main)
