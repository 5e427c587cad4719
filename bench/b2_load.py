"""``python -m bench.b2_load``: RSVP POSTs at a fixed rate, open loop, from a process of its own.

Request *i* starts at ``start + i / rate`` whatever happened to the earlier
ones, and its latency is measured from that scheduled start, so a stalled
server shows up as latency instead of as a slower load (no coordinated
omission). Each request is one attendee's first RSVP, with its JWT and a
fresh ``Idempotency-Key``. One JSON line per answer goes to ``--out``; the
last line on stdout is ``{"result": {...}}``.

The generator shares the machine's cores with the system it drives, so it
must cost little per request: it posts with aiohttp (about a fifth of the CPU
per request that httpx took, which made one generator fall behind near
150/s on a busy machine and its own backlog show as the system's latency).
Each line also says when the request really started (``started``): a
generator that could not keep its schedule shows there, not as the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

TIMEOUT_S = 30.0  # a request still unanswered then counts as failed (status 0)


BODY = orjson.dumps({"status": "going"})


async def post_rsvp(
    session: aiohttp.ClientSession,
    api: str,
    attendee: dict[str, str],
    scheduled: float,
    offset: float,
) -> dict[str, Any]:
    """One RSVP; times are unix seconds (``offset`` turns the monotonic clock into unix)."""
    started = time.monotonic()
    status, rsvp_id = 0, None
    try:
        async with session.post(
            f"{api}/events/{attendee['event_id']}/rsvps",
            data=BODY,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {attendee['token']}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        ) as response:
            body = await response.read()
            status = response.status
            if 200 <= status < 300:
                rsvp_id = orjson.loads(body).get("id")
    except (aiohttp.ClientError, TimeoutError):
        pass  # status 0: not answered
    answered = time.monotonic()
    return {
        "user": attendee["user"],
        "rsvp_id": rsvp_id,
        "status": status,
        "scheduled": scheduled + offset,
        "started": started + offset,
        "answered": answered + offset,
        "latency_ms": (answered - scheduled) * 1000,
    }


async def drive(
    api: str, rate: float, seconds: float, attendees: list[dict[str, str]]
) -> list[Any]:
    count = int(rate * seconds)
    if count > len(attendees):
        raise SystemExit(f"{count} RSVPs asked for, {len(attendees)} attendees prepared")
    api = api.rstrip("/")
    connector = aiohttp.TCPConnector(limit=512, force_close=False)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        offset = time.time() - time.monotonic()
        start = time.monotonic() + 0.1
        tasks = []
        for i in range(count):
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(
                asyncio.create_task(post_rsvp(session, api, attendees[i], scheduled, offset))
            )
        return list(await asyncio.gather(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="base URL of the calendar service")
    parser.add_argument("--rate", type=float, required=True, help="RSVP POSTs a second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument(
        "--attendees", type=Path, required=True, help="JSON: [{user, token, event_id}, ...]"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per answer")
    args = parser.parse_args()
    attendees = json.loads(args.attendees.read_text())
    answers = uvloop.run(drive(args.api, args.rate, args.seconds, attendees))
    args.out.write_text("".join(json.dumps(answer) + "\n" for answer in answers))
    accepted = sum(1 for a in answers if 200 <= a["status"] < 300)
    print(json.dumps({"result": {"sent": len(answers), "accepted": accepted}}), flush=True)


if __name__ == "__main__":
    main()
