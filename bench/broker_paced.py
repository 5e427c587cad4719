"""Experiment: what one message costs RabbitMQ at a steady, low rate (issue 13).

    python -m bench.broker_paced [--rates 30,120] [--seconds 20]

B2 offers 30 RSVPs a second, and each RSVP is three publishes with confirms
(the fanout and two follow-ups), four deliveries and four acks. At such a
rate every message travels alone: nothing is batched in the client or in the
broker. This measures that cost on a broker of its own, so nothing else on
the machine is counted: a single RabbitMQ node started from Debian's scripts
(``devtools.cluster``, one node, its own ports and data directory), one
durable queue of each type, persistent 600-byte messages published one at a
time at each rate with confirms from one connection and consumed and acked
by another channel. CPU is the node's ``beam.smp`` from /proc over the run,
per message. It writes ``bench/results/broker_paced.json``.

The node is ``rsvp-c1@localhost`` (as ``make test-cluster``'s first node):
do not run both at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import uvloop
from aio_pika.abc import AbstractIncomingMessage

from bench import harness
from devtools.cluster import Cluster

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BODY = b"x" * 600


def beam_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


async def paced_run(url: str, queue_type: str, rate: float, seconds: float, pid: int) -> float:
    """CPU ms of the node per message, publishing at ``rate`` for ``seconds``."""
    connection = await aio_pika.connect(url)
    try:
        publishing = await connection.channel(publisher_confirms=True)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=64)
        name = f"paced.{queue_type}"
        await publishing.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        queue = await consuming.get_queue(name)
        count = int(rate * seconds)
        received = 0
        all_received = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received == count:
                all_received.set()

        await queue.consume(on_message)
        before = beam_cpu_s(pid)
        start = time.monotonic()
        pending = []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            message = aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            pending.append(
                asyncio.ensure_future(
                    publishing.default_exchange.publish(message, routing_key=name)
                )
            )
        await asyncio.gather(*pending)
        await asyncio.wait_for(all_received.wait(), timeout=60)
        return 1000 * (beam_cpu_s(pid) - before) / count
    finally:
        await connection.close()


async def measure(rates: list[float], seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rsvp-paced-") as base:
        cluster = Cluster(Path(base), size=1)
        [node] = cluster.nodes
        if cluster.is_alive(node):
            raise SystemExit(f"{node.name} already runs (make test-cluster?): stop it first")
        started = time.monotonic()
        cluster.up()
        start_s = time.monotonic() - started
        try:
            pid = int((Path(base) / node.name.split("@")[0] / "rabbit.pid").read_text())
            url = f"amqp://guest:guest@127.0.0.1:{node.amqp_port}/"
            await asyncio.sleep(5)  # the node settles after start
            idle_before = beam_cpu_s(pid)
            await asyncio.sleep(10)
            idle_ms_per_s = 100 * (beam_cpu_s(pid) - idle_before)
            runs: list[dict[str, Any]] = []
            for queue_type in ("quorum", "classic"):
                for rate in rates:
                    ms = await paced_run(url, queue_type, rate, seconds, pid)
                    print(f"{queue_type} at {rate:g}/s: {ms:.3f} ms CPU a message", flush=True)
                    runs.append(
                        {"queue_type": queue_type, "rate_per_s": rate, "cpu_ms": round(ms, 3)}
                    )
            version = cluster.ctl(node, "version").strip()
        finally:
            cluster.down()
    return {
        "benchmark": "broker_paced",
        "machine": {**harness.machine(), "rabbitmq": version},
        "settings": {
            "runs_text": f"{len(rates)} rates x {seconds:g} s, quorum and classic",
            "seconds": seconds,
            "body_bytes": len(BODY),
            "node_start_s": round(start_s, 1),
        },
        "idle_cpu_ms_per_s": round(idle_ms_per_s, 2),
        "runs": runs,
        "what": "publish with confirm, deliver and ack of one message, one at a time",
        "summary": [
            {
                "what": f"RabbitMQ CPU a message, {r['queue_type']}, {r['rate_per_s']:g}/s",
                "figure": f"{r['cpu_ms']} ms",
                "baseline": "-",
                "ratio": None,
                "target_text": "stated: B2's RabbitMQ budget is 2 ms for 3 publishes",
                "met": None,
            }
            for r in runs
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rates", default="30,120", help="messages a second, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="each run")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    report = uvloop.run(measure(rates, args.seconds))
    path = harness.write_result("broker_paced", report)
    print(f"idle {report['idle_cpu_ms_per_s']} ms CPU a second; written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
