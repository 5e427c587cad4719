"""Issue 14 item 6: RSVPs flow at a steady rate while one server fails; nothing is lost.

Each test sends 10 RSVPs a second for 14 s through the real processes (API,
relay, delivery reports, email and push consumers), injects one fault 2 s
in, and then audits: every answer was a 201 (a 503 with ``Retry-After``
was tried again, never a 500), every RSVP event written reached its
attendee exactly once by email and once by push or lies in the DLQ with its
reason, and delivery caught up within a bound after the fault ended (the
figure is printed: ``make test-faults``).

How each server fails, without touching the shared servers (see
``catalogue.py``): RabbitMQ and PostgreSQL are cut off by loopback TCP
proxies (every connection reset, new ones refused: what a stopped server
looks like from the processes); connections and backends are closed through
the broker's management API and ``pg_terminate_backend``, for this run's
vhost and database only; Redis is a private ``redis-server`` that is killed
and started again; the SMTP server is this test's own aiosmtpd; the
processes are SIGKILLed and started again.

The dead-letter archiver runs among the processes, so a dead letter is
audited where an operator finds it, in the store; a mailbox that refuses
mail for a while shows the rest of the operator's part: its dead letters are
replayed with ``rsvp-dlq`` once it takes mail again, and each arrives once.
"""

from __future__ import annotations

import pytest

from tests.faults.catalogue import catalogue
from tests.faults.load import Audience, Outcome, run_with_fault
from tests.faults.replay import replay_round
from tests.faults.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


async def survive(system: RunningSystem, audience: Audience, fault: str) -> Outcome:
    injected, expected = catalogue(system, audience)[fault]

    outcome = await run_with_fault(system, audience, injected)

    print(f"\n{outcome.summary()}")
    outcome.assert_kept(duplicates_allowed=expected.duplicates_allowed)
    assert outcome.recovery_s <= expected.recovers_within_s, outcome.summary()
    system.assert_all_running()
    return outcome


async def test_every_broker_connection_closed(system: RunningSystem, audience: Audience) -> None:
    await survive(system, audience, "broker-connections")


async def test_the_broker_away_for_10s(system: RunningSystem, audience: Audience) -> None:
    await survive(system, audience, "broker-stopped")


async def test_every_database_backend_terminated(system: RunningSystem, audience: Audience) -> None:
    await survive(system, audience, "database-backends")


async def test_the_database_away_for_10s(system: RunningSystem, audience: Audience) -> None:
    outcome = await survive(system, audience, "database-stopped")

    assert outcome.refused[503] > 0  # the API said so, with Retry-After, rather than 500


async def test_redis_away_for_10s(system: RunningSystem, audience: Audience) -> None:
    await survive(system, audience, "redis-stopped")


async def test_smtp_down_past_the_first_retries(system: RunningSystem, audience: Audience) -> None:
    await survive(system, audience, "smtp-down")


async def test_the_relay_and_each_consumer_killed_mid_batch(
    system: RunningSystem, audience: Audience
) -> None:
    await survive(system, audience, "processes-killed")


async def test_mail_refused_for_one_mailbox_is_archived_then_replayed_and_sent_once(
    system: RunningSystem, audience: Audience
) -> None:
    outcome = await survive(system, audience, "recipient-refused")

    # a 550 is permanent: dead-lettered at once, no retry, and archived in the store
    assert outcome.dead, outcome.summary()
    assert {channel for channel, _ in outcome.dead} == {"email"}, outcome.summary()
    assert set(outcome.dead.values()) == {"invalid_recipient"}, outcome.summary()
    assert not any(outcome.emails[m] for _, m in outcome.dead), "a refused mail arrived"

    replayed = await replay_round(system, outcome)  # the mailbox takes mail again

    print(replayed.summary())
    assert replayed.chosen == set(outcome.dead), replayed.summary()
    replayed.assert_kept()  # every one marked replayed, then arrived exactly once
    assert len(replayed.delivered()) == len(outcome.dead), replayed.summary()
    assert not replayed.dead_again, replayed.summary()
    system.assert_all_running()
