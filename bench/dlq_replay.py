"""B6: replay N dead letters back to their origin queue, confirms on (bench.md).

    python -m bench.dlq_replay [--messages 100000] [--window 500]

Fills ``email.rsvp_events.dlq`` of a throw-away vhost with N envelopes
carrying the runtime's fault headers, replays them all with the same engine
``rsvp-dlq replay`` runs, and writes ``bench/results/dlq_replay.json``. The
baseline, measured in the same run on the same broker, is the fill itself:
persistent publishes with confirms, 500 in flight, into a quorum queue.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import uvloop

from bench import harness
from devtools.env import EnvSettings
from shared.dlq.office import DeadLetterOffice
from shared.dlq.selection import Filter
from shared.messaging.topology import EMAIL_RSVP_EVENTS
from tests.support.dlq import dead_letter, depth
from tests.support.messages import rsvp_created
from tests.support.services import create_broker_vhost, delete_broker_vhost

NAME = "dlq_replay"
BASELINE = "publish, persistent, confirms, 500 in flight, quorum queue (the fill)"
TARGET_MSG_PER_S = 5000


async def measure(messages: int, window: int) -> dict[str, Any]:
    settings = EnvSettings()
    broker = await create_broker_vhost(settings)
    try:
        envelopes = [rsvp_created() for _ in range(messages)]
        started = time.perf_counter()
        await dead_letter(broker, EMAIL_RSVP_EVENTS, envelopes)
        fill_s = time.perf_counter() - started

        frames = 0

        def progress(_counts: object) -> None:
            nonlocal frames
            frames += 1

        async with DeadLetterOffice(broker.amqp_url("ops"), window=window) as office:
            started = time.perf_counter()
            outcome = await office.replay(
                EMAIL_RSVP_EVENTS.dead_letter_queue, Filter(), on_progress=progress
            )
            replay_s = time.perf_counter() - started
        arrived = await depth(broker, EMAIL_RSVP_EVENTS.name, "email")
    finally:
        await delete_broker_vhost(settings, broker.vhost)
    replay_rate = messages / replay_s
    baseline_rate = messages / fill_s
    ratio = round(replay_rate / baseline_rate, 2)
    return {
        "benchmark": "B6 dlq replay",
        "machine": harness.machine(),
        "settings": {"window": window, "runs_text": f"1 x {messages} msgs"},
        "messages": messages,
        "replayed": outcome.replayed,
        "arrived_at_origin": arrived,
        "replay_seconds": round(replay_s, 2),
        "replay_msg_per_s": round(replay_rate),
        "baseline": BASELINE,
        "baseline_msg_per_s": round(baseline_rate),
        "ratio_to_baseline": ratio,
        "target_msg_per_s": TARGET_MSG_PER_S,
        "progress_updates": frames,
        "summary": [
            {
                "what": f"replay {messages} dead letters to their origin, confirms on, "
                f"window {window}; {arrived} arrived",
                "figure": f"{replay_rate:.0f} msg/s",
                "baseline": f"{BASELINE}: {baseline_rate:.0f} msg/s",
                "ratio": ratio,
                "target_text": f">= {TARGET_MSG_PER_S} msg/s",
                "met": replay_rate >= TARGET_MSG_PER_S and arrived == messages,
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()
    result = uvloop.run(measure(args.messages, args.window))
    path = harness.write_result(NAME, result)
    print(path.read_text())


if __name__ == "__main__":
    main()
