"""Experiment: the CPU one relay pass costs in its own process, row by row (issue 13).

    python -m bench.relay_pass_cost [--passes 400] [--rows-per-pass 1,10]

B4 runs the relay as a process beside a load driver; on two shared cores its
figures move by ±25 % from run to run, too much to see a 10 % change. This
runs ``OutboxRelay.publish_pending_outbox`` in this process, one pass after
another, and reads this process's CPU clock around each pass only (the rows
are inserted on another connection, untimed): the relay's own cost per row,
steady enough to compare two versions of the relay back to back.
"""

from __future__ import annotations

import argparse
import statistics
import time

import aio_pika
import asyncpg
import uvloop

from bench import harness
from calendar_service.outbox import calendar_route
from calendar_service.relay import MARK_WITHOUT_FSYNC, OutboxRelay, RelayOptions
from shared.messaging.publisher import Publisher
from tests.support.messages import rsvp_created

INSERT = "INSERT INTO outbox (message_id, message_type, exchange, routing_key, body) "
INSERT += "VALUES ($1, $2, $3, $4, $5)"


async def cost_per_row_ms(servers: harness.Servers, passes: int, rows_per_pass: int) -> float:
    """Median over rounds of this process's CPU per published row, in ms."""
    messages = [rsvp_created() for _ in range(passes * rows_per_pass)]
    route = calendar_route(messages[0].type)
    rows = [
        (m.message_id, m.type, route.exchange, route.routing_key, m.model_dump_json().encode())
        for m in messages
    ]
    writer = await asyncpg.connect(servers.asyncpg_dsn)
    pool = await asyncpg.create_pool(
        servers.asyncpg_dsn, min_size=1, max_size=1, server_settings=MARK_WITHOUT_FSYNC
    )
    broker = await aio_pika.connect(servers.broker.amqp_url("calendar"))
    try:
        channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
        relay = OutboxRelay(pool, Publisher(channel), RelayOptions())
        rounds: list[float] = []
        async with pool.acquire() as connection:
            for start in range(0, passes, passes // 4):
                spent = 0.0
                for p in range(start, min(start + passes // 4, passes)):
                    await writer.executemany(
                        INSERT, rows[p * rows_per_pass : (p + 1) * rows_per_pass]
                    )
                    began = time.process_time()
                    result = await relay.publish_pending_outbox(connection, begin_next=True)
                    spent += time.process_time() - began
                    assert result.published == rows_per_pass, result
                rounds.append(spent * 1000 / (passes // 4 * rows_per_pass))
            await connection.execute("ROLLBACK")  # the pass begun for next time
    finally:
        await broker.close()
        await pool.close()
        await writer.close()
    return statistics.median(rounds)


async def measure(passes: int, sizes: list[int]) -> None:
    async with harness.throwaway_servers() as servers:
        for size in sizes:
            cost = await cost_per_row_ms(servers, passes, size)
            print(f"{size:3d} rows per pass: {cost:.3f} ms CPU per row", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=400)
    parser.add_argument("--rows-per-pass", default="1,10")
    args = parser.parse_args()
    uvloop.run(measure(args.passes, [int(s) for s in args.rows_per_pass.split(",")]))


if __name__ == "__main__":
    main()
