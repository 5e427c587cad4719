"""A consumer on the shared runtime whose handler kills its process: a poison message.

    python -m tests.support.crashing_consumer AMQP_URL DATABASE_URL [--idle-exit S]

Every message it receives ends the process at once (``os._exit``), with no
ack, no nack and no clean-up, as a segfault or the OOM killer would. With
nothing to consume for ``--idle-exit`` seconds it exits 0 instead, so a test
can restart it in a loop and see when the broker stopped redelivering. The
idle clock starts once it consumes, not when the process starts: however
long a loaded machine takes to start it, a waiting message gets the whole
``--idle-exit`` to arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from shared.messaging.inbox import PostgresInbox
from shared.messaging.runtime import ConsumerRuntime
from shared.messaging.topology import EMAIL_RSVP_EVENTS
from shared.schemas import Envelope, RsvpMessage

CRASHED = 70  #: the exit code of a crash in the handler


async def crash(message: Envelope[Any]) -> Sequence[Envelope[Any]]:
    os._exit(CRASHED)


async def main(amqp_url: str, database_url: str, idle_exit_s: float) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    runtime = ConsumerRuntime(
        "email", amqp_url, inbox=PostgresInbox(pool), producer="crashing_consumer", prefetch=1
    )
    runtime.subscribe(EMAIL_RSVP_EVENTS, crash, accepts=RsvpMessage)
    task = asyncio.create_task(runtime.run())
    while not (runtime.ready or task.done()):
        await asyncio.sleep(0.05)
    consuming = time.monotonic()
    while time.monotonic() - consuming < idle_exit_s and not task.done():
        await asyncio.sleep(0.05)
    runtime.stop()
    await task
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("amqp_url")
    parser.add_argument("database_url")
    parser.add_argument("--idle-exit", type=float, default=5.0)
    options = parser.parse_args()
    asyncio.run(main(options.amqp_url, options.database_url, options.idle_exit))
