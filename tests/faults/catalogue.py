"""Every fault the fault tests and ``make soak`` inject, built for one running system.

Each takes a server away from the processes under test only: connections and
backends of this run's vhost and database, its own TCP proxies, its own
redis-server and SMTP server, its own processes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from tests.faults.load import Audience, Fault
from tests.faults.system import RunningSystem
from tests.support.runtime import drop_broker_connections

#: How long a server stays away in the "stopped" faults.
OUTAGE_S = 10.0
#: The processes the kill fault SIGKILLs (the API is a replica behind a load balancer).
KILLED = ("relay", "email", "push", "reports", "deadletters")
#: How long one attendee's mailbox refuses mail in the "recipient-refused" fault.
REFUSED_S = 4.0


@dataclass(frozen=True)
class Expectation:
    """What a fault test asserts besides "nothing lost, no 500"."""

    recovers_within_s: float
    #: The documented window: a consumer killed between the server's answer and
    #: its inbox record sends that message again, at most once per running handler.
    duplicates_allowed: int = 0


async def terminate_backends(system: RunningSystem) -> int:
    """``pg_terminate_backend`` for every session of this run's database but our own."""
    connection = await asyncpg.connect(system.database_url.replace("+asyncpg", ""))
    try:
        terminated: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return terminated


def catalogue(system: RunningSystem, audience: Audience) -> dict[str, tuple[Fault, Expectation]]:
    """Each fault by a short name, with what must hold through it."""
    link, database, redis, mail = system.broker_link, system.database, system.redis, system.mail
    refused = audience.attendees[0]["email"]

    async def refuse() -> None:
        mail.refuse_recipient(refused, f"550 5.1.1 <{refused}>: mailbox unavailable")

    async def accept() -> None:
        mail.accept_recipient(refused)

    async def kill_all() -> None:
        for name in KILLED:
            await system.kill(name)

    async def start_all() -> None:
        await asyncio.gather(*(system.start(name) for name in KILLED))

    return {
        "broker-connections": (
            Fault("broker connections closed", lambda: drop_broker_connections(system.broker)),
            Expectation(15),
        ),
        "broker-stopped": (
            Fault("broker stopped 10 s", link.cut, link.start, lasting_s=OUTAGE_S),
            Expectation(30),
        ),
        "database-backends": (
            Fault("database backends terminated", lambda: terminate_backends(system)),
            Expectation(15),
        ),
        "database-stopped": (
            Fault("database stopped 10 s", database.cut, database.start, lasting_s=OUTAGE_S),
            Expectation(15),
        ),
        "redis-stopped": (
            Fault("redis stopped 10 s", redis.stop, redis.start, lasting_s=OUTAGE_S),
            Expectation(10),
        ),
        # past the 1 s and the 5 s tier: a mail that failed in both waits in the 30 s one
        "smtp-down": (
            Fault(
                "SMTP down 8 s",
                lambda: asyncio.to_thread(mail.stop),
                lambda: asyncio.to_thread(mail.start),
                lasting_s=8.0,
            ),
            Expectation(45),
        ),
        "processes-killed": (
            Fault(
                "relay, consumers and archiver SIGKILLed",
                kill_all,
                start_all,
                lasting_s=1.0,
                at_s=4.0,
            ),
            Expectation(30, duplicates_allowed=2 * 16),
        ),
        # a permanent refusal: those mails are dead-lettered ``invalid_recipient`` at once
        # (no retry), archived, and delivered once replayed after the mailbox is back
        "recipient-refused": (
            Fault(f"one mailbox refusing mail {REFUSED_S:.0f} s", refuse, accept, REFUSED_S),
            Expectation(15),
        ),
    }
