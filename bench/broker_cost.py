"""Experiment: where RabbitMQ's CPU per RSVP goes, one setting changed at a time (issue 13).

    python -m bench.broker_cost [--messages 2000] [--variants all]

Each variant loads the product topology (``broker/definitions.json``), possibly
altered, into a throw-away vhost, publishes RSVP-sized messages with confirms
to ``rsvp.events`` (fanned out to ``email.rsvp_events`` and
``push.rsvp_events``) and consumes and acks both copies, reading ``beam.smp``'s
CPU from /proc around the run. The broker is shared with other work, so its
background rate is measured just before each run and subtracted. The idle
variants measure what a vhost of queues costs per second with no traffic,
which B2 divides by its RSVPs like any other CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import uvloop
from aio_pika.abc import AbstractIncomingMessage

from bench import procstat
from devtools.env import EnvSettings
from shared.management import ManagementClient
from shared.messaging.codec import envelope_to_amqp
from shared.messaging.definitions import DEFINITIONS_PATH, retarget
from shared.messaging.topology import EMAIL_RSVP_EVENTS, EVENTS_EXCHANGE, PUSH_RSVP_EVENTS
from tests.support.messages import rsvp_created
from tests.support.services import BrokerEnv, delete_broker_vhost, new_resource_name

Definitions = dict[str, Any]


@dataclass(frozen=True)
class Variant:
    name: str
    window: int = 1  #: publishes in flight (1: publish, wait for the confirm, next)
    prefetch: int = 32
    ack_every: int = 1  #: ack with multiple=True every n deliveries
    alter: Callable[[Definitions], None] = lambda _: None


def without_length_limit(definitions: Definitions) -> None:
    for queue in definitions["queues"]:
        queue["arguments"].pop("x-max-length", None)
        queue["arguments"].pop("x-overflow", None)


def side_queues_classic(definitions: Definitions) -> None:
    """Retry tiers and dead-letter queues as classic queues (quorum stays on work queues)."""
    for queue in definitions["queues"]:
        if ".retry." in queue["name"] or queue["name"].endswith(".dlq"):
            queue["arguments"] = {
                k: v
                for k, v in queue["arguments"].items()
                if k in ("x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key")
            }
            queue["arguments"]["x-queue-type"] = "classic"


def all_classic(definitions: Definitions) -> None:
    for queue in definitions["queues"]:
        queue["arguments"] = {
            k: v
            for k, v in queue["arguments"].items()
            if k in ("x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key")
        }


VARIANTS = {
    v.name: v
    for v in (
        Variant("product: window 1, prefetch 32, ack each"),
        Variant("confirms batched: window 50", window=50),
        Variant("acks batched: multiple every 16", ack_every=16),
        Variant("prefetch 1", prefetch=1),
        Variant("no x-max-length / reject-publish", alter=without_length_limit),
        Variant("classic queues (reference, not design)", alter=all_classic),
    )
}


def broker_seconds() -> float:
    stats = procstat.all_stats()
    return procstat.cpu_seconds({"b": procstat.broker_pids(stats)}, stats)["b"]


async def background_rate(seconds: float = 3.0) -> float:
    """The broker's CPU seconds per second while this experiment does nothing."""
    before = broker_seconds()
    await asyncio.sleep(seconds)
    return (broker_seconds() - before) / seconds


async def vhost_with(env: EnvSettings, alter: Callable[[Definitions], None]) -> BrokerEnv:
    vhost = new_resource_name()
    definitions = retarget(json.loads(DEFINITIONS_PATH.read_text()), vhost, description="bench")
    definitions = copy.deepcopy(definitions)
    alter(definitions)
    async with ManagementClient(env.rabbitmq_admin_url) as admin:
        await admin.import_definitions(definitions)
    return BrokerEnv(vhost, "127.0.0.1", 5672, env.rabbitmq_admin_url)


async def consume(broker: BrokerEnv, user: str, queue: str, variant: Variant, count: int) -> None:
    connection = await aio_pika.connect(broker.amqp_url(user))
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        seen += 1
        if seen % variant.ack_every == 0 or seen == count:
            await message.ack(multiple=variant.ack_every > 1)
        if seen == count:
            done.set()

    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=max(variant.prefetch, variant.ack_every))
        source = await channel.get_queue(queue, ensure=False)
        await source.consume(on_message)
        await done.wait()


async def run_variant(env: EnvSettings, variant: Variant, count: int) -> dict[str, Any]:
    broker = await vhost_with(env, variant.alter)
    try:
        messages = [envelope_to_amqp(rsvp_created()) for _ in range(count)]
        connection = await aio_pika.connect(broker.amqp_url("calendar"))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
            background = await background_rate()
            started, cpu_before = time.perf_counter(), broker_seconds()
            consumers = [
                asyncio.create_task(
                    consume(broker, "email", EMAIL_RSVP_EVENTS.name, variant, count)
                ),
                asyncio.create_task(consume(broker, "push", PUSH_RSVP_EVENTS.name, variant, count)),
            ]
            for start in range(0, count, variant.window):
                window = messages[start : start + variant.window]
                await asyncio.gather(*(exchange.publish(m, "", mandatory=True) for m in window))
            await asyncio.gather(*consumers)
            elapsed, cpu = time.perf_counter() - started, broker_seconds() - cpu_before
    finally:
        await delete_broker_vhost(env, broker.vhost)
    own = cpu - background * elapsed
    return {
        "variant": variant.name,
        "broker_ms_per_queue_message": round(own * 1000 / (2 * count), 3),
        "background_ms_per_s": round(background * 1000, 1),
        "seconds": round(elapsed, 1),
    }


async def idle_cost(env: EnvSettings, alter: Callable[[Definitions], None], name: str) -> str:
    """Broker CPU per second that one more vhost of the topology costs with no traffic."""
    without = await background_rate(8.0)
    broker = await vhost_with(env, alter)
    try:
        await asyncio.sleep(2.0)
        with_it = await background_rate(8.0)
    finally:
        await delete_broker_vhost(env, broker.vhost)
    added, background = 1000 * (with_it - without), 1000 * without
    return f"idle vhost, {name}: {added:+.1f} ms/s (background {background:.1f} ms/s)"


async def measure(count: int, names: list[str], rounds: int, idle: bool) -> None:
    env = EnvSettings()
    if idle:
        for _ in range(rounds):
            print(await idle_cost(env, lambda _: None, "product (30 quorum queues)"), flush=True)
            print(await idle_cost(env, side_queues_classic, "retry/dlq classic"), flush=True)
    for _ in range(rounds):
        for name in names:
            print(await run_variant(env, VARIANTS[name], count), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default="all", help="comma-separated names, or all")
    parser.add_argument("--idle", action="store_true", help="also measure idle vhosts")
    args = parser.parse_args()
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    uvloop.run(measure(args.messages, names, args.rounds, args.idle))


if __name__ == "__main__":
    main()
