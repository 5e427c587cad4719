"""``python -m bench.mixed_load``: the reference day's mix of requests, open loop, at a fixed rate.

Request *i* starts at ``start + i / rate`` whatever happened to the earlier
ones (no coordinated omission), and is one of the kinds of :data:`MIX`,
drawn with its weight from a seeded generator, so two runs offer the same
sequence. One JSON line per answer goes to ``--out``; the last line on
stdout is ``{"result": {...}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop

TIMEOUT_S = 30.0  # a request still unanswered then counts as failed (status 0)

#: The reference day (README "Capacity"): mostly reads of event pages, then RSVPs
#: (each one mail and one push later), lists, a guest reading back their RSVP, and
#: sign-ins (an argon2 hash each, so few: a token lasts the day).
MIX: dict[str, float] = {
    "event": 0.70,
    "rsvp": 0.12,
    "attendees": 0.08,
    "events": 0.05,
    "own_rsvp": 0.045,
    "login": 0.005,
}


class Plan:
    """What the requests are about: attendees with tokens, events, RSVPs, accounts."""

    def __init__(self, data: dict[str, Any], seed: int) -> None:
        self.attendees: list[dict[str, str]] = data["attendees"]
        self.events: list[str] = data["events"]
        self.organizer: str = data["organizer"]  #: the events' organizer's token
        self.rsvps: list[dict[str, str]] = data["rsvps"]  #: {id, token}
        self.accounts: list[dict[str, str]] = data["accounts"]  #: {email, password}
        self.random = random.Random(seed)
        self.kinds = list(MIX)
        self.weights = [MIX[kind] for kind in self.kinds]

    def next_kind(self) -> str:
        return self.random.choices(self.kinds, self.weights)[0]


Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def request_for(kind: str, plan: Plan) -> Request:
    """One request of ``kind``, its target drawn now (so the sequence is the seed's)."""
    pick = plan.random.choice
    if kind == "rsvp":
        attendee = pick(plan.attendees)
        body = {"status": pick(("going", "maybe", "declined"))}
        headers = {
            "Authorization": f"Bearer {attendee['token']}",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        url = f"/events/{pick(plan.events)}/rsvps"
        return lambda client: client.post(url, json=body, headers=headers)
    if kind == "login":
        account = pick(plan.accounts)
        form = {"username": account["email"], "password": account["password"]}
        return lambda client: client.post("/auth/token", data=form)
    if kind == "own_rsvp":
        rsvp = pick(plan.rsvps)
        mine = {"Authorization": f"Bearer {rsvp['token']}"}
        return lambda client: client.get(f"/rsvps/{rsvp['id']}", headers=mine)
    headers = {"Authorization": f"Bearer {pick(plan.attendees)['token']}"}
    if kind == "event":
        url = f"/events/{pick(plan.events)}"
    elif kind == "attendees":  # the organizer's view of who answered
        url = f"/events/{pick(plan.events)}/rsvps?limit=50"
        headers = {"Authorization": f"Bearer {plan.organizer}"}
    elif kind == "events":
        url = "/events?limit=20"
    else:
        raise ValueError(f"unknown kind of request: {kind}")
    return lambda client: client.get(url, headers=headers)


async def timed(
    client: httpx.AsyncClient, kind: str, request: Request, scheduled: float, offset: float
) -> dict[str, Any]:
    status = 0  # not answered
    with contextlib.suppress(httpx.HTTPError):
        status = (await request(client)).status_code
    answered = time.monotonic()
    return {
        "kind": kind,
        "status": status,
        "scheduled": scheduled + offset,
        "latency_ms": (answered - scheduled) * 1000,
    }


async def drive(api: str, rate: float, seconds: float, plan: Plan) -> list[Any]:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(base_url=api, timeout=TIMEOUT_S, limits=limits) as client:
        offset = time.time() - time.monotonic()
        start = time.monotonic() + 0.1
        tasks = []
        for i in range(int(rate * seconds)):
            kind = plan.next_kind()
            request = request_for(kind, plan)
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(timed(client, kind, request, scheduled, offset)))
        return list(await asyncio.gather(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="base URL (nginx in front of the replicas)")
    parser.add_argument("--rate", type=float, required=True, help="requests a second, all kinds")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--plan", type=Path, required=True, help="JSON written by the benchmark")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per answer")
    args = parser.parse_args()
    plan = Plan(json.loads(args.plan.read_text()), args.seed)
    answers = uvloop.run(drive(args.api, args.rate, args.seconds, plan))
    args.out.write_text("".join(json.dumps(answer) + "\n" for answer in answers))
    answered = sum(1 for a in answers if 200 <= a["status"] < 300)
    print(json.dumps({"result": {"sent": len(answers), "answered_2xx": answered}}), flush=True)


if __name__ == "__main__":
    main()
