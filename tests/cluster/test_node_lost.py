"""A RabbitMQ node lost while RSVPs flow: nothing lost, nothing doubled, delivery resumes.

Every process of the system runs as ``make run`` starts it, with
``AMQP_URL`` naming the three nodes of a cluster. The work queues are
quorum queues replicated on all three. RSVPs are posted at a steady rate;
a few seconds in, the node that leads the work queues (and that every
process is connected to, as the first of their list) goes away: its RabbitMQ
application stopped (``rabbitmqctl stop_app``: clients are told, the
leadership handed over), or its Erlang runtime SIGKILLed (a crash: nobody
is told). Every accepted RSVP must still end with exactly one
email and one push, and the ones accepted after the stop must be delivered
within ``RECOVERY_BOUND_S``. The figures measured are printed.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from devtools.cluster import Cluster, Node
from push_consumer.bootstrap import NAME as PUSH_NAME
from shared.messaging.topology import EMAIL_RSVP_EVENTS, PUSH_RSVP_EVENTS, WORK_QUEUES
from tests.cluster.conftest import ClusterBroker
from tests.support.api import PUSH_SUBSCRIPTIONS, create_event, post_rsvp, register
from tests.support.push_service import running_push_service
from tests.support.smtp import SmtpSink
from tests.support.system import RunningSystem, running_system

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

GUESTS = 6
EVENTS = 40
#: RSVPs posted per second, whatever the answers take (240 RSVPs in 24 s).
RATE_PER_S = 10.0
#: When the leading node is lost, after the first RSVP.
LOSS_AFTER_S = 8.0
#: Longest an RSVP accepted after the stop may wait for its email or push.
RECOVERY_BOUND_S = 30.0
#: Longest everything may take to arrive once the last RSVP is in.
DELIVERY_DEADLINE_S = 120.0
#: How long to go on listening once everything arrived, for a late duplicate.
SETTLE_S = 10.0

TITLE = re.compile(r"Cluster night \d{3}")
Key = tuple[str, str]  #: (guest, event title): one RSVP


@dataclass
class Arrivals:
    """When each email and push arrived (monotonic clock), by RSVP."""

    mails: list[tuple[Key, float]] = field(default_factory=list)
    pushes: list[tuple[Key, float]] = field(default_factory=list)


async def stamp_mail_arrivals(mail: SmtpSink, arrivals: Arrivals) -> None:
    """Note each mail's arrival time (the sink keeps none), every 20 ms."""
    while True:
        for received in mail.received[len(arrivals.mails) :]:
            title = event_title(str(received.message["Subject"]))
            arrivals.mails.append(((received.rcpt_tos[0], title), time.monotonic()))
        await asyncio.sleep(0.02)


def event_title(text: str) -> str:
    found = TITLE.search(text)
    assert found is not None, text
    return found.group(0)


def broker_env(broker: ClusterBroker) -> dict[str, str]:
    """Each process as its own broker user, on all three nodes."""
    return {
        "AMQP_URL": broker.amqp_urls("calendar"),  # API, relay, reports, scheduler
        "EMAIL__AMQP_URL": broker.amqp_urls("email"),
        "PUSH__AMQP_URL": broker.amqp_urls("push"),
        "API__ADMIN_AMQP_URL": broker.amqp_urls("dlq-admin"),
        "RABBITMQ_MANAGEMENT_URL": broker.cluster.management_urls("ops"),
    }


def worst_after(latencies: dict[Key, float], accepted: dict[Key, float], since: float) -> float:
    return max(latencies[key] for key, at in accepted.items() if at >= since)


LOSSES: dict[str, Callable[[Cluster, Node], None]] = {
    "stop_app": Cluster.stop_app,
    "killed": Cluster.kill,
}


@pytest.mark.parametrize("loss", LOSSES)
async def test_losing_the_node_that_leads_the_work_queues_loses_and_doubles_nothing(
    loss: str, cluster_broker: ClusterBroker, system_database: str, mail: SmtpSink
) -> None:
    async with cluster_broker.management() as admin:
        for queue in WORK_QUEUES:
            members = (await admin.queue(cluster_broker.vhost, queue.name))["members"]
            assert len(members) == 3, f"{queue.name} is replicated on {members}"
    leader = await cluster_broker.leader_of(EMAIL_RSVP_EVENTS.name)
    assert await cluster_broker.leader_of(PUSH_RSVP_EVENTS.name) == leader

    arrivals = Arrivals()
    async with (
        running_push_service() as push,
        running_system(system_database, broker_env(cluster_broker), mail) as system,
        httpx.AsyncClient(base_url=system.api, timeout=30) as client,
    ):
        organizer = await register(client, name="Organizer")
        guests = [await register(client, name=f"Guest {n}") for n in range(GUESTS)]
        subscription_of: dict[str, str] = {}
        for guest in guests:
            device = push.subscribe()
            subscribed = await client.post(
                PUSH_SUBSCRIPTIONS, json=device.as_json(), headers=guest["headers"]
            )
            assert subscribed.status_code == 201, subscribed.text
            subscription_of[device.id] = guest["email"]
        events = [
            await create_event(client, organizer, title=f"Cluster night {n:03d}")
            for n in range(EVENTS)
        ]

        answers: Counter[int] = Counter()
        accepted: dict[Key, float] = {}

        async def rsvp(event: dict[str, Any], guest: dict[str, Any]) -> None:
            response = await post_rsvp(client, event, guest)
            answers[response.status_code] += 1
            if response.status_code == 201:
                accepted[(guest["email"], event["title"])] = time.monotonic()

        stamping = asyncio.create_task(stamp_mail_arrivals(mail, arrivals))
        started = time.monotonic()
        lost_at = started + LOSS_AFTER_S

        async def lose_leader() -> None:
            await asyncio.sleep(LOSS_AFTER_S)
            await asyncio.to_thread(LOSSES[loss], cluster_broker.cluster, leader)

        plan = [(event, guest) for event in events for guest in guests]
        async with asyncio.TaskGroup() as posting:
            posting.create_task(lose_leader())
            for n, (event, guest) in enumerate(plan):
                await asyncio.sleep(max(0.0, started + n / RATE_PER_S - time.monotonic()))
                posting.create_task(rsvp(event, guest))

        await wait_for_every_delivery(system, accepted, arrivals, push)
        moved = await connections_of_every_process(cluster_broker)
        await asyncio.sleep(SETTLE_S)  # a duplicate would come now
        stamping.cancel()
        arrivals.pushes = [
            (
                (subscription_of[p.subscription_id], event_title(p.notification["title"])),
                p.received_at,
            )
            for p in push.received
        ]

    assert answers == {201: len(plan)}, answers
    emails = Counter(key for key, _ in arrivals.mails)
    pushes = Counter(key for key, _ in arrivals.pushes)
    expected = Counter(accepted.keys())
    assert emails == expected, f"lost {expected - emails}, doubled {emails - expected}"
    assert pushes == expected, f"lost {expected - pushes}, doubled {pushes - expected}"

    mail_latency = {key: at - accepted[key] for key, at in arrivals.mails}
    push_latency = {key: at - accepted[key] for key, at in arrivals.pushes}
    worst_mail = worst_after(mail_latency, accepted, lost_at)
    worst_push = worst_after(push_latency, accepted, lost_at)
    mail_pause = longest_pause([at for _, at in arrivals.mails], after=lost_at)
    push_pause = longest_pause([at for _, at in arrivals.pushes], after=lost_at)
    new_leader = await cluster_broker.leader_of(EMAIL_RSVP_EVENTS.name)
    after = [v for k, v in mail_latency.items() if accepted[k] >= lost_at]
    before = [v for k, v in mail_latency.items() if accepted[k] < lost_at]
    print(
        f"\ncluster node lost ({loss}): {leader.name} {LOSS_AFTER_S:.0f}s into "
        f"{len(plan)} RSVPs at {RATE_PER_S:.0f}/s; work queues now led by {new_leader.name}\n"
        f"  accepted {len(accepted)}, emails {sum(emails.values())}, pushes "
        f"{sum(pushes.values())}, lost 0, doubled 0\n"
        f"  longest pause in deliveries after the loss: email {mail_pause:.1f}s, "
        f"push {push_pause:.1f}s\n"
        f"  RSVP -> email: median {statistics.median(before):.2f}s before the loss, "
        f"{statistics.median(after):.2f}s after (worst {worst_mail:.1f}s); "
        f"RSVP -> push worst after the loss {worst_push:.1f}s",
        file=sys.stderr,
    )
    assert new_leader != leader
    # every process followed the cluster to the nodes still up
    assert leader.name not in {c["node"] for c in moved}
    assert worst_mail <= RECOVERY_BOUND_S
    assert worst_push <= RECOVERY_BOUND_S


def longest_pause(arrivals: list[float], *, after: float) -> float:
    """The longest time without an arrival, from ``after`` to the last arrival."""
    times = sorted([after, *(at for at in arrivals if at >= after)])
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def connections_of_every_process(broker: ClusterBroker) -> list[dict[str, Any]]:
    """The vhost's connections, once every process's connection is listed.

    The management API lists a connection once the node's statistics come
    round (every 5 s by default), hence the wait.
    """
    wanted = {
        "calendar-api",
        "dead-letter-archiver",
        "outbox-relay",
        "calendar_service/calendar",
        "email_consumer/email",
        f"push_consumer/{PUSH_NAME}",
    }
    async with broker.management() as admin, asyncio.timeout(30):
        while True:
            connections = await admin.connections(broker.vhost)
            names = {c["client_properties"].get("connection_name") for c in connections}
            if wanted <= names:
                return connections
            await asyncio.sleep(1)


async def wait_for_every_delivery(
    system: RunningSystem, accepted: dict[Key, float], arrivals: Arrivals, push: Any
) -> None:
    deadline = time.monotonic() + DELIVERY_DEADLINE_S
    while len(arrivals.mails) < len(accepted) or len(push.received) < len(accepted):
        if time.monotonic() > deadline:
            tail = "".join(system.output[-60:])
            raise AssertionError(
                f"after {DELIVERY_DEADLINE_S:.0f}s: {len(arrivals.mails)} emails, "
                f"{len(push.received)} pushes of {len(accepted)} RSVPs\n{tail}"
            )
        await asyncio.sleep(0.1)
