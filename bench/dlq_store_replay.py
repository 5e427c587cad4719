"""B6: archive N dead letters into the store, then replay them all from it (issue 15).

    python -m bench.dlq_store_replay [--messages 100000]

Fills ``email.rsvp_events.dlq`` of a throw-away vhost with N envelopes
carrying the runtime's fault headers, runs the archiver until every one is
stored and acked (its rate is reported: it must keep up with replays of this
class), then replays them all from the store with the job
``/admin/dead-letters/replay`` starts, and counts what arrived at the origin
queue. The baseline (:mod:`bench.confirmed_publish`) publishes N of the very
copies the replay sends, built beforehand, to the same quorum queue with the
replay's window of confirms in flight: batched, before and after the replay,
and one ``basic_publish`` a message; the best of them is the baseline.
Writes ``bench/results/dlq_store_replay.json``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import uvloop

from bench import confirmed_publish, harness
from shared.dlq.copies import COPY_COLUMNS, ReplayTarget, replay_copy
from shared.dlq.queries import StoreFilter
from shared.dlq.replays import BATCH, WORKERS, ReplayOrder
from shared.dlq.store import DeadLetterStore
from shared.messaging.batch_publisher import OutgoingMessage
from shared.messaging.topology import EMAIL_RSVP_EVENTS
from tests.support.amqp import channel_as
from tests.support.dlq import archive_dead_letters, dead_letter, depth
from tests.support.messages import rsvp_created
from tests.support.services import BrokerEnv

NAME = "dlq_store_replay"
WINDOW = BATCH * WORKERS
BASELINE = (
    f"plain confirmed publish of the same copies, persistent, {WINDOW} in flight, "
    "same quorum queue, no database (best of: batched before, batched after, "
    "one basic_publish a message)"
)
FILL = "the fill: publish with fault headers into the DLQ, confirms, 500 in flight"
TARGET_MSG_PER_S = 5000
SAMPLE = 1000


async def _copies(db: asyncpg.Connection) -> list[OutgoingMessage]:
    """The copies a replay would send of the first stored letters (the baseline's messages)."""
    rows = await db.fetch(
        f"SELECT {COPY_COLUMNS} FROM dead_letters ORDER BY id LIMIT $1",  # noqa: S608
        SAMPLE,
    )
    replayed_at = datetime.now(UTC).isoformat()
    return [replay_copy(row, uuid.uuid4(), replayed_at, ReplayTarget.QUEUE) for row in rows]


async def _purge_origin(broker: BrokerEnv) -> None:
    async with channel_as(broker.amqp_url("email")) as channel:
        queue = await channel.get_queue(EMAIL_RSVP_EVENTS.name, ensure=False)
        await queue.purge()


async def _baseline(
    broker: BrokerEnv, sample: list[OutgoingMessage], messages: int, how: str
) -> float:
    url = broker.amqp_url("ops")
    if how == "per_message":
        seconds = await confirmed_publish.per_message(url, sample, messages, WINDOW)
    else:
        seconds = await confirmed_publish.batched(
            url, sample, messages, batch=BATCH, workers=WORKERS
        )
    await _purge_origin(broker)
    return messages / seconds


async def measure(messages: int) -> dict[str, Any]:
    async with harness.throwaway_servers() as servers:
        envelopes = [rsvp_created() for _ in range(messages)]
        started = time.perf_counter()
        await dead_letter(servers.broker, EMAIL_RSVP_EVENTS, envelopes)
        fill_s = time.perf_counter() - started
        # N models kept alive would make every garbage collection of the replay slower
        # (an API process replaying holds no such list)
        del envelopes

        started = time.perf_counter()
        await archive_dead_letters(servers.broker, servers.database_url, timeout=600)
        archive_s = time.perf_counter() - started
        db = await asyncpg.connect(servers.asyncpg_dsn)
        stored = await db.fetchval("SELECT count(*) FROM dead_letters")
        sample = await _copies(db)
        baselines = {
            "batched_before": await _baseline(servers.broker, sample, messages, "batched"),
            "per_message": await _baseline(servers.broker, sample, messages, "per_message"),
        }

        async with DeadLetterStore(servers.asyncpg_dsn, servers.broker.amqp_url("ops")) as store:
            started = time.perf_counter()
            replay_id, matched = await store.start_replay(
                ReplayOrder(StoreFilter(), actor="bench"), target="bench"
            )
            await store.wait(replay_id)
            replay_s = time.perf_counter() - started
            progress = await store.replay(replay_id)
        marked = await db.fetchval("SELECT count(*) FROM dead_letters WHERE state = 'replayed'")
        await db.close()
        arrived = await depth(servers.broker, EMAIL_RSVP_EVENTS.name, "email")
        await _purge_origin(servers.broker)
        baselines["batched_after"] = await _baseline(servers.broker, sample, messages, "batched")
        versions = await harness.server_versions(servers)
    replay_rate, baseline_rate = messages / replay_s, max(baselines.values())
    fill_rate, archive_rate = messages / fill_s, messages / archive_s
    ratio = round(replay_rate / baseline_rate, 2)
    return {
        "benchmark": "B6 dead-letter replay from the store",
        "machine": {**harness.machine(), **versions},
        "settings": {
            "runs_text": f"1 x {messages} msgs",
            "batch": BATCH,
            "workers": WORKERS,
        },
        "messages": messages,
        "stored": stored,
        "matched": matched,
        "replayed": progress["replayed"],
        "marked_replayed": marked,
        "arrived_at_origin": arrived,
        "archive_seconds": round(archive_s, 2),
        "archive_msg_per_s": round(archive_rate),
        "replay_seconds": round(replay_s, 2),
        "replay_msg_per_s": round(replay_rate),
        "baseline": BASELINE,
        "baseline_msg_per_s": round(baseline_rate),
        "baselines_msg_per_s": {how: round(rate) for how, rate in baselines.items()},
        "fill_msg_per_s": round(fill_rate),
        "ratio_to_baseline": ratio,
        "target_msg_per_s": TARGET_MSG_PER_S,
        "summary": [
            {
                "what": f"replay {messages} stored dead letters to their origin, confirms on; "
                f"{arrived} arrived, {marked} marked replayed",
                "figure": f"{replay_rate:.0f} msg/s",
                "baseline": f"{BASELINE}: {baseline_rate:.0f} msg/s",
                "ratio": ratio,
                "target_text": f">= {TARGET_MSG_PER_S} msg/s",
                "met": replay_rate >= TARGET_MSG_PER_S and arrived == marked == messages,
            },
            {
                "what": f"archive {messages} dead letters from their DLQ into the store",
                "figure": f"{archive_rate:.0f} msg/s",
                "baseline": f"{FILL}: {fill_rate:.0f} msg/s",
                "ratio": round(archive_rate / fill_rate, 2),
                "target_text": f">= {TARGET_MSG_PER_S} msg/s",
                "met": archive_rate >= TARGET_MSG_PER_S and stored == messages,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    result = uvloop.run(measure(args.messages))
    path = harness.write_result(NAME, result)
    print(path.read_text())


if __name__ == "__main__":
    main()
