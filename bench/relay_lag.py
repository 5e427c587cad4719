"""B4: the outbox relay's lag (commit -> on the queue) and its CPU per row (bench.md).

    python -m bench.relay_lag [--rates 30,150] [--seconds 20] [--runs 1]

A throw-away database and vhost; ``python -m calendar_service.relay`` runs
against them in its own process while this one commits outbox rows open-loop
at each rate, one row per transaction as the API does, so every commit
NOTIFYs. A consumer here takes the copies the fanout puts on
``email.rsvp_events`` and stamps their arrival: the lag is arrival minus the
driver's commit, an upper bound of commit -> confirm. The relay's CPU is read
from /proc over the run and divided by the rows. The baseline, in the same run,
is the broker alone: the same messages published here with confirms at the
same rate, timed from the publish to the same consumer.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import uvloop
from aio_pika.abc import AbstractIncomingMessage

from bench import harness, procstat
from calendar_service.outbox import calendar_route
from shared.messaging.codec import envelope_to_amqp
from shared.messaging.topology import EMAIL_RSVP_EVENTS, EVENTS_EXCHANGE, PUSH_RSVP_EVENTS
from tests.support.messages import rsvp_created

NAME = "relay_lag"
LAG_P99_TARGET_MS = 20.0
CPU_TARGET_MS = 0.5
WARM_UP_S = 2.0
INSERT = "INSERT INTO outbox (message_id, message_type, exchange, routing_key, body) "
INSERT += "VALUES ($1, $2, $3, $4, $5)"

Send = Callable[[int], Awaitable[str]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Arrivals:
    """When each message id reached ``email.rsvp_events``; ``push``'s copies are dropped."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self._missing: set[str] = set()
        self._complete = asyncio.Event()

    def on_email(self, message: AbstractIncomingMessage) -> None:
        message_id = str(message.message_id)
        self.seen[message_id] = time.time()
        self._missing.discard(message_id)
        if not self._missing:
            self._complete.set()

    async def lags_ms(self, started: dict[str, float], *, within_s: float = 30) -> list[float]:
        """Arrival minus start of each message in ``started`` that arrived within the limit."""
        self._missing = {m for m in started if m not in self.seen}
        self._complete.clear()
        if self._missing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within_s):
                    await self._complete.wait()
        return [(self.seen[m] - t) * 1000 for m, t in started.items() if m in self.seen]

    async def consume(self, servers: harness.Servers) -> aio_pika.abc.AbstractConnection:
        connection = await aio_pika.connect(servers.broker.amqp_url("email"))
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=1000)
        queue = await channel.get_queue(EMAIL_RSVP_EVENTS.name, ensure=False)
        await queue.consume(self.on_email, no_ack=True)  # type: ignore[arg-type]
        push = await aio_pika.connect(servers.broker.amqp_url("push"))
        push_channel = await push.channel()
        await push_channel.set_qos(prefetch_count=1000)
        push_queue = await push_channel.get_queue(PUSH_RSVP_EVENTS.name, ensure=False)
        await push_queue.consume(lambda _: None, no_ack=True)  # type: ignore[arg-type,return-value]
        connection.close_callbacks.add(lambda *_: push.close())
        return connection


async def open_loop(rate: float, seconds: float, send: Send) -> dict[str, float]:
    """Call ``send(i)`` at ``rate`` per second whatever it takes; returns id -> start time."""
    started: dict[str, float] = {}
    pending: set[asyncio.Task[None]] = set()
    begin = time.perf_counter()

    async def one(i: int) -> None:
        at = time.time()
        message_id = await send(i)
        started[message_id] = at

    for i in range(int(rate * seconds)):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    return started


def figures(lags: list[float], sent: int) -> dict[str, Any]:
    return {
        "sent": sent,
        "arrived": len(lags),
        "lag_p50_ms": round(statistics.median(lags), 2) if lags else None,
        "lag_p99_ms": round(percentile(lags, 0.99), 2) if lags else None,
        "lag_max_ms": round(max(lags), 2) if lags else None,
    }


async def relay_run(servers: harness.Servers, rate: float, seconds: float) -> dict[str, Any]:
    """Commit rows at ``rate`` with a relay process running; its lag and CPU per row."""
    messages = [rsvp_created() for _ in range(int(rate * (seconds + WARM_UP_S)))]
    route = calendar_route(messages[0].type)
    rows = [(m.message_id, m.type, m.model_dump_json().encode()) for m in messages]
    env = {
        "DATABASE_URL": servers.database_url,
        "AMQP_URL": servers.broker.amqp_url("calendar"),
        "METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
    }
    pool = await asyncpg.create_pool(servers.asyncpg_dsn, min_size=4, max_size=4)
    arrivals = Arrivals()
    consumer = await arrivals.consume(servers)
    try:
        async with harness.process(["-m", "calendar_service.relay"], env=env) as relay:

            async def commit(i: int) -> str:
                message_id, message_type, body = rows[i]
                await pool.execute(
                    INSERT, message_id, message_type, route.exchange, route.routing_key, body
                )
                return str(message_id)

            warm = await open_loop(rate, WARM_UP_S, commit)  # connects, fills caches
            await arrivals.lags_ms(warm)
            offset = len(warm)
            before = procstat.cpu_seconds({"relay": [relay.pid]}, procstat.all_stats())
            started = await open_loop(rate, seconds, lambda i: commit(offset + i))
            lags = await arrivals.lags_ms(started)
            after = procstat.cpu_seconds({"relay": [relay.pid]}, procstat.all_stats())
    finally:
        await consumer.close()
        await pool.close()
    cpu_ms = (after["relay"] - before["relay"]) * 1000 / len(started)
    return {"rate": rate, **figures(lags, len(started)), "relay_cpu_ms_per_row": round(cpu_ms, 3)}


async def broker_run(servers: harness.Servers, rate: float, seconds: float) -> dict[str, Any]:
    """The baseline: the same messages published here with confirms, no database, no relay."""
    messages = [envelope_to_amqp(rsvp_created()) for _ in range(int(rate * seconds))]
    arrivals = Arrivals()
    consumer = await arrivals.consume(servers)
    connection = await aio_pika.connect(servers.broker.amqp_url("calendar"))
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)

        async def publish(i: int) -> str:
            await exchange.publish(messages[i], "", mandatory=True)
            return str(messages[i].message_id)

        started = await open_loop(rate, seconds, publish)
        lags = await arrivals.lags_ms(started)
    finally:
        await connection.close()
        await consumer.close()
    return {"rate": rate, **figures(lags, len(started))}


def summary(relay: dict[str, Any], broker: dict[str, Any]) -> list[dict[str, Any]]:
    rate = relay["rate"]
    lag, cpu = relay["lag_p99_ms"], relay["relay_cpu_ms_per_row"]
    base = broker["lag_p99_ms"]
    return [
        {
            "what": f"relay lag p99, commit -> on the queue, {rate:g} rows/s "
            f"({relay['arrived']}/{relay['sent']} arrived)",
            "figure": f"{lag} ms",
            "baseline": f"publish with confirm -> on the queue, no relay: p99 {base} ms",
            "ratio": None,
            "target_text": f"<= {LAG_P99_TARGET_MS:g} ms",
            "met": lag is not None
            and lag <= LAG_P99_TARGET_MS
            and relay["arrived"] == relay["sent"],
        },
        {
            "what": f"relay CPU per row at {rate:g} rows/s",
            "figure": f"{cpu} ms",
            "baseline": "-",
            "ratio": None,
            "target_text": f"<= {CPU_TARGET_MS:g} ms",
            "met": cpu <= CPU_TARGET_MS,
        },
    ]


async def measure(rates: list[float], seconds: float, runs: int) -> dict[str, Any]:
    relay_runs: list[dict[str, Any]] = []
    broker_runs: list[dict[str, Any]] = []
    for _ in range(runs):
        for rate in rates:
            async with harness.throwaway_servers() as servers:
                broker_runs.append(await broker_run(servers, rate, seconds))
                relay_runs.append(await relay_run(servers, rate, seconds))
            print(relay_runs[-1], broker_runs[-1], flush=True)
    rows = []
    for rate in rates:
        mine = [r for r in relay_runs if r["rate"] == rate]
        theirs = [r for r in broker_runs if r["rate"] == rate]
        relay = {
            **mine[0],
            "lag_p99_ms": harness.median(r["lag_p99_ms"] or 1e9 for r in mine),
            "relay_cpu_ms_per_row": harness.median(r["relay_cpu_ms_per_row"] for r in mine),
        }
        broker = {**theirs[0], "lag_p99_ms": harness.median(r["lag_p99_ms"] or 0 for r in theirs)}
        rows.extend(summary(relay, broker))
    return {
        "benchmark": "B4 relay lag",
        "machine": harness.machine(),
        "settings": {"seconds": seconds, "runs_text": f"{runs} x {seconds:g} s per rate"},
        "relay_runs": relay_runs,
        "broker_runs": broker_runs,
        "summary": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="30,150")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    result = uvloop.run(measure(rates, args.seconds, args.runs))
    path = harness.write_result(NAME, result)
    print(path.read_text())


if __name__ == "__main__":
    main()
