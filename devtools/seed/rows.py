"""The seeded rows, as COPY text (tab-separated, ``\\N`` for NULL), in chunks of bytes.

Ids are UUIDs (version 4 layout) made of the run's random prefix, a table
tag and the row's number, so two seeds never collide and every row can be
named from its number alone: a second pass over the RSVPs (their
notification status, their outbox history) recomputes what it needs instead
of keeping ten million rows in memory. What varies per row (an RSVP's answer,
guests, version) comes from small tables drawn once from the seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from devtools.seed.plan import EventPlan, Scale
from shared.messaging.topology import ROUTES

#: rows per chunk handed to COPY (and per step of the progress bar)
CHUNK_ROWS = 20_000
#: the seed's clock: one tick is 30 s, so 500,000 ticks are about 174 days of history
TICK = timedelta(seconds=30)
ANSWER_TABLE = 4096
TAGS = {"users": 1, "events": 2, "rsvps": 3, "outbox": 4, "push": 5}
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman")
TOPICS = ("Compiler", "Jazz", "Board games", "Climbing", "Python", "Film", "Chess", "Pottery")
KINDS = ("meetup", "night", "workshop", "festival", "conference", "club", "social")
#: answer mix: going 70 %, maybe 15 %, declined 10 %, cancelled 5 %
STATUS_WEIGHTS = {"going": 70, "maybe": 15, "declined": 10, "cancelled": 5}

Progress = Callable[[int], None]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S+00")


@dataclass
class Seed:
    """One seeding run: its scale, plan, id prefix and clock."""

    scale: Scale
    plans: Sequence[EventPlan]
    run: str
    password_hash: str
    origin: datetime = field(default_factory=lambda: datetime.now(UTC) - 180 * timedelta(days=1))
    rng_seed: int = 16
    clock: list[str] = field(init=False)
    answers: list[tuple[str, int, int]] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(self.rng_seed)  # noqa: S311 - sample data, repeatable
        ticks = max(2 * self.scale.biggest, 500_000)
        self.clock = [_stamp(self.origin + i * TICK) for i in range(ticks)]
        statuses = rng.choices(
            list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()), k=ANSWER_TABLE
        )
        self.answers = [
            (
                status,
                rng.choice((1, 2)) if status == "going" and rng.random() < 0.1 else 0,
                2 if status == "cancelled" or rng.random() < 0.1 else 1,
            )
            for status in statuses
        ]

    def id_prefix(self, table: str) -> str:
        return f"{self.run}-{TAGS[table]:04x}-4000-8000-"

    def organizers(self) -> int:
        return max(1, self.scale.users // 20)

    def has_push(self, user: int) -> bool:
        return user % round(1 / self.scale.push_share) == 0 if self.scale.push_share else False


def _chunks(lines: Iterator[str], progress: Progress) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == CHUNK_ROWS:
            yield "".join(batch).encode()
            progress(len(batch))
            batch = []
    if batch:
        yield "".join(batch).encode()
        progress(len(batch))


USER_COLUMNS = ("id", "email", "name", "password_hash", "role", "created_at")


def users(seed: Seed, progress: Progress) -> Iterator[bytes]:
    prefix, clock, hash_ = seed.id_prefix("users"), seed.clock, seed.password_hash
    names = [f"{f} {last}" for f in FIRST_NAMES for last in LAST_NAMES]

    def lines() -> Iterator[str]:
        for u in range(seed.scale.users):
            yield (
                f"{prefix}{u:012x}\tuser{u}.{seed.run}@seed.example.org\t{names[u % len(names)]}"
                f"\t{hash_}\tuser\t{clock[u % 1000]}\n"
            )

    return _chunks(lines(), progress)


EVENT_COLUMNS = (
    "id", "organizer_id", "title", "starts_at", "ends_at", "location", "capacity",
    "going_seats", "going_count", "maybe_count", "declined_count", "created_at",
)  # fmt: skip


def events(seed: Seed, counts: dict[int, list[int]], progress: Progress) -> Iterator[bytes]:
    """The events, with the counters their RSVPs add up to (``counts``: index -> counters)."""
    rng = random.Random(seed.rng_seed + 1)  # noqa: S311 - sample data
    prefix, users_prefix = seed.id_prefix("events"), seed.id_prefix("users")

    def lines() -> Iterator[str]:
        # in id order, so the primary key grows at its right edge
        for plan in sorted(seed.plans, key=lambda p: p.index):
            seats, going, maybe, declined = counts[plan.index]
            opened = seed.origin + plan.opened_at * TICK
            starts = opened + timedelta(days=rng.randrange(7, 400), hours=rng.randrange(8, 22))
            capacity = "\\N" if plan.index == 0 or rng.random() < 0.7 else seats + rng.randrange(50)
            title = f"{rng.choice(TOPICS)} {rng.choice(KINDS)} #{plan.index}"
            location = "\\N" if rng.random() < 0.2 else f"Room {rng.randrange(1, 500)}"
            yield (
                f"{prefix}{plan.index:012x}\t{users_prefix}{plan.index % seed.organizers():012x}"
                f"\t{title}\t{_stamp(starts)}\t{_stamp(starts + timedelta(hours=2))}\t{location}"
                f"\t{capacity}\t{seats}\t{going}\t{maybe}\t{declined}\t{_stamp(opened)}\n"
            )

    return _chunks(lines(), progress)


RSVP_COLUMNS = (
    "id", "event_id", "user_id", "status", "guests", "version", "created_at", "updated_at"
)  # fmt: skip


def rsvps(seed: Seed, counts: dict[int, list[int]], progress: Progress) -> Iterator[bytes]:
    """Every RSVP, event by event in keyset order; fills ``counts`` as it goes."""
    prefix, events_prefix = seed.id_prefix("rsvps"), seed.id_prefix("events")
    users_prefix, clock, answers = seed.id_prefix("users"), seed.clock, seed.answers
    pool = seed.scale.users

    def lines() -> Iterator[str]:
        for plan in seed.plans:
            event = f"{events_prefix}{plan.index:012x}"
            seats = going = maybe = declined = 0
            for k in range(plan.size):
                n = plan.first_rsvp + k
                status, guests, version = answers[n % ANSWER_TABLE]
                if status == "going":
                    going += 1
                    seats += 1 + guests
                elif status == "maybe":
                    maybe += 1
                elif status == "declined":
                    declined += 1
                at = clock[plan.opened_at + k]
                user = (plan.first_user + k * plan.stride) % pool
                yield (
                    f"{prefix}{n:012x}\t{event}\t{users_prefix}{user:012x}\t{status}\t{guests}"
                    f"\t{version}\t{at}\t{at}\n"
                )
            counts[plan.index] = [seats, going, maybe, declined]

    return _chunks(lines(), progress)


STATUS_COLUMNS = ("rsvp_id", "channel", "status", "rsvp_version", "detail", "updated_at")


def notification_statuses(seed: Seed, progress: Progress) -> Iterator[bytes]:
    """Per RSVP: its email (sent, a few failed or still pending) and its push (or skipped)."""
    prefix, clock, answers, pool = (
        seed.id_prefix("rsvps"),
        seed.clock,
        seed.answers,
        seed.scale.users,
    )
    email = ["sent"] * 97 + ["failed"] * 2 + ["pending"]

    def lines() -> Iterator[str]:
        for plan in seed.plans:
            for k in range(plan.size):
                n = plan.first_rsvp + k
                rsvp, version, at = (
                    f"{prefix}{n:012x}",
                    answers[n % ANSWER_TABLE][2],
                    clock[plan.opened_at + k],
                )
                mail = email[n % 100]
                detail = "550 mailbox unavailable" if mail == "failed" else "\\N"
                push = (
                    "sent"
                    if seed.has_push((plan.first_user + k * plan.stride) % pool)
                    else "skipped"
                )
                yield f"{rsvp}\temail\t{mail}\t{version}\t{detail}\t{at}\n"
                yield f"{rsvp}\tpush\t{push}\t{version}\t\\N\t{at}\n"

    return _chunks(lines(), progress)


OUTBOX_COLUMNS = (
    "message_id", "message_type", "exchange", "routing_key", "body", "headers", "created_at",
    "published_at", "attempts",
)  # fmt: skip


def outbox(seed: Seed, progress: Progress) -> Iterator[bytes]:
    """The published history: the messages of each event's latest ``outbox_share`` answers."""
    prefix, rsvp_prefix = seed.id_prefix("outbox"), seed.id_prefix("rsvps")
    events_prefix, users_prefix = seed.id_prefix("events"), seed.id_prefix("users")
    clock, answers, pool = seed.clock, seed.answers, seed.scale.users
    routes = {t: ROUTES[t] for t in ("rsvp.created", "rsvp.updated")}

    def lines() -> Iterator[str]:
        for plan in seed.plans:
            kept = math.ceil(plan.size * seed.scale.outbox_share)
            for k in range(plan.size - kept, plan.size):
                n = plan.first_rsvp + k
                status, guests, version = answers[n % ANSWER_TABLE]
                type_ = "rsvp.created" if version == 1 else "rsvp.updated"
                message_id, at = f"{prefix}{n:012x}", clock[plan.opened_at + k]
                user = (plan.first_user + k * plan.stride) % pool
                body = orjson.dumps(
                    {
                        "message_id": message_id,
                        "type": type_,
                        "schema_version": 1,
                        "occurred_at": at,
                        "producer": "calendar",
                        "data": {
                            "rsvp_id": f"{rsvp_prefix}{n:012x}",
                            "event_id": f"{events_prefix}{plan.index:012x}",
                            "user_id": f"{users_prefix}{user:012x}",
                            "status": status,
                            "guests": guests,
                            "version": version,
                        },
                    }
                )
                route = routes[type_]
                yield (
                    f"{message_id}\t{type_}\t{route.exchange}\t{route.routing_key}"
                    f"\t\\\\x{body.hex()}\t{{}}\t{at}\t{at}\t0\n"
                )

    return _chunks(lines(), progress)


PUSH_COLUMNS = ("id", "user_id", "endpoint", "p256dh", "auth", "created_at")


def push_subscriptions(seed: Seed, progress: Progress) -> Iterator[bytes]:
    prefix, users_prefix, clock = seed.id_prefix("push"), seed.id_prefix("users"), seed.clock
    key = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"

    def lines() -> Iterator[str]:
        for u in range(seed.scale.users):
            if seed.has_push(u):
                yield (
                    f"{prefix}{u:012x}\t{users_prefix}{u:012x}"
                    f"\thttps://push.seed.example.org/{seed.run}/{u}\t{key}\ttBHItJI5svbpez7KI4CCXg"
                    f"\t{clock[u % 1000]}\n"
                )

    return _chunks(lines(), progress)
