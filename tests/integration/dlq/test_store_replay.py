"""Replay from the dead-letter store (design §6.6, §9): a background job that marks only
what the broker confirmed, can be cancelled, and stops itself when the copies fail again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shared.dlq.archive import REPLAY_ID
from shared.dlq.queries import StoreFilter
from shared.dlq.replays import ReplayOrder
from shared.dlq.selection import REPLAY_COUNT
from shared.dlq.store import DeadLetterStore
from shared.dlq.watch import WatchPolicy
from shared.messaging.topology import EMAIL_RSVP_EVENTS, PUSH_COMMANDS
from tests.integration.dlq.stored import arrived, store_letters
from tests.support.dlq import archiver_settings, depth, drain, running_archiver
from tests.support.email_consumer import email_settings, running_email_consumer
from tests.support.messages import email_send, rsvp_created
from tests.support.polling import until
from tests.support.services import BrokerEnv
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.integration

ORIGIN = PUSH_COMMANDS.name


@pytest.fixture
async def dead_letters(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> AsyncIterator[DeadLetterStore]:
    dsn = database_url.replace("+asyncpg", "")
    async with DeadLetterStore(dsn, fresh_broker.amqp_url("ops"), name="tests") as dead_letters:
        yield dead_letters


async def _finished(dead_letters: DeadLetterStore, replay_id: uuid.UUID) -> dict[str, Any]:
    return await until(
        lambda: dead_letters.replay(replay_id),
        lambda r: r["state"] != "running",
        timeout=60,
        stall=15,
        what="the replay's end",
    )


async def _states(store: asyncpg.Pool) -> dict[str, int]:
    rows = await store.fetch("SELECT state, count(*) FROM dead_letters GROUP BY state")
    return {row["state"]: row["count"] for row in rows}


async def test_a_group_replay_sends_copies_to_the_origin_marks_rows_and_is_audited(
    fresh_broker: BrokerEnv, store: asyncpg.Pool, dead_letters: DeadLetterStore
) -> None:
    letters = [arrived(PUSH_COMMANDS, email_send()) for _ in range(20)]
    await store_letters(store, letters)
    (group,) = await dead_letters.groups()

    replay_id, matched = await dead_letters.start_replay(
        ReplayOrder(StoreFilter(group=group["group"]), actor="ops@example.com"),
        target=group["group"],
    )
    progress = await _finished(dead_letters, replay_id)

    copies = await drain(fresh_broker, ORIGIN, "push")
    rows = await store.fetch("SELECT * FROM dead_letters ORDER BY id")
    (entry,), _ = await dead_letters.audit()
    assert matched == 20
    assert progress | {"failed_again": 0} == progress
    assert (progress["state"], progress["replayed"]) == ("done", 20)
    assert [c.message_id for c in copies] == [a.letter.message_id for a in letters]
    assert copies[0].headers[REPLAY_COUNT] == 1
    assert copies[0].headers[REPLAY_ID] == str(replay_id)
    assert {(r["state"], r["replay_id"], r["replay_count"]) for r in rows} == {
        ("replayed", replay_id, 1)
    }
    assert (entry.actor, entry.action, entry.target) == (
        "ops@example.com",
        "replay",
        group["group"],
    )
    assert entry.detail["matched"] == 20
    assert (await dead_letters.groups()) == []


async def test_a_dry_run_counts_and_changes_nothing(
    fresh_broker: BrokerEnv, store: asyncpg.Pool, dead_letters: DeadLetterStore
) -> None:
    await store_letters(store, [arrived(PUSH_COMMANDS, email_send()) for _ in range(5)])

    replay_id, matched = await dead_letters.start_replay(
        ReplayOrder(
            StoreFilter(queue=PUSH_COMMANDS.dead_letter_queue), actor="ops", dry_run=True, limit=3
        ),
        target="push.commands.dlq",
    )

    assert matched == 3
    assert (await dead_letters.replay(replay_id))["state"] == "done"
    assert await _states(store) == {"dead": 5}
    assert await depth(fresh_broker, ORIGIN, "ops") == 0


async def test_a_cancelled_replay_stops_and_leaves_the_rest_dead(
    fresh_broker: BrokerEnv, store: asyncpg.Pool, dead_letters: DeadLetterStore
) -> None:
    await store_letters(store, [arrived(PUSH_COMMANDS, email_send()) for _ in range(100)])
    replay_id, _ = await dead_letters.start_replay(
        ReplayOrder(StoreFilter(), actor="ops", rate=20), target="all"
    )
    await until(
        lambda: dead_letters.replay(replay_id), lambda r: r["replayed"] > 0, what="progress"
    )

    await dead_letters.cancel_replay(replay_id, actor="ops")
    progress = await _finished(dead_letters, replay_id)

    states = await _states(store)
    assert (progress["state"], progress["stopped_reason"]) == ("stopped", "cancelled")
    assert states["replayed"] == progress["replayed"] < 100
    assert states["dead"] == 100 - progress["replayed"]
    assert await depth(fresh_broker, ORIGIN, "ops") == progress["replayed"]


async def test_an_interrupted_replay_marks_only_what_the_broker_confirmed(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> None:
    await store_letters(store, [arrived(PUSH_COMMANDS, email_send()) for _ in range(300)])
    dsn = database_url.replace("+asyncpg", "")
    dead_letters = DeadLetterStore(dsn, fresh_broker.amqp_url("ops"))
    replay_id, _ = await dead_letters.start_replay(
        ReplayOrder(StoreFilter(), actor="ops", rate=200), target="all"
    )
    await until(
        lambda: dead_letters.replay(replay_id), lambda r: r["replayed"] >= 50, what="progress"
    )

    await dead_letters.aclose()  # the process stops mid-replay

    states = await _states(store)
    async with DeadLetterStore(dsn, "amqp://unused") as after_restart:
        progress = await after_restart.replay(replay_id)
    assert states.get("replayed", 0) + states.get("dead", 0) == 300
    # every row marked replayed had its copy confirmed (copies may exceed marks, never trail)
    assert await depth(fresh_broker, ORIGIN, "ops") >= states["replayed"] == progress["replayed"]
    assert progress["state"] == "stopped"


async def test_a_replay_into_a_consumer_that_still_fails_stops_itself_within_the_window(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool, dead_letters: DeadLetterStore
) -> None:
    gone = "gone@example.com"
    letters = [arrived(EMAIL_RSVP_EVENTS, rsvp_created(email=gone)) for _ in range(1000)]
    await store_letters(store, letters)
    (group,) = await dead_letters.groups()
    window = 100

    with SmtpSink() as sink:
        sink.refuse_recipient(gone)  # the cause is not fixed
        consumer = email_settings(fresh_broker, database_url, sink)
        async with (
            running_email_consumer(consumer),
            running_archiver(archiver_settings(fresh_broker, database_url)),
        ):
            replay_id, matched = await dead_letters.start_replay(
                ReplayOrder(
                    StoreFilter(group=group["group"]),
                    actor="ops",
                    stop_if_failing=True,
                    watch=WatchPolicy(window=window, threshold=0.5, min_outcomes=20),
                ),
                target=group["group"],
            )
            progress = await _finished(dead_letters, replay_id)

    originals = await store.fetchval(
        "SELECT count(*) FROM dead_letters WHERE replay_of IS NULL AND state = 'dead'"
    )
    assert matched == 1000
    assert progress["state"] == "stopped"
    assert "failed again" in progress["stopped_reason"]
    assert progress["replayed"] <= 2 * window
    assert progress["failed_again"] > 0
    assert originals == 1000 - progress["replayed"]
    assert sink.received == []


async def _copies_and_states(
    fresh_broker: BrokerEnv, store: asyncpg.Pool
) -> tuple[list[str], dict[str, str]]:
    copies = [c.message_id or "" for c in await drain(fresh_broker, ORIGIN, "push")]
    rows = await store.fetch("SELECT message_id, state FROM dead_letters")
    return copies, {row["message_id"]: row["state"] for row in rows}


async def test_a_replay_cancelled_with_batches_in_flight_sends_exactly_what_it_marks(
    fresh_broker: BrokerEnv, store: asyncpg.Pool, dead_letters: DeadLetterStore
) -> None:
    await store_letters(store, [arrived(PUSH_COMMANDS, email_send()) for _ in range(5000)])

    replay_id, _ = await dead_letters.start_replay(
        ReplayOrder(StoreFilter(), actor="ops"), target="all"
    )
    await dead_letters.cancel_replay(replay_id, actor="ops")  # its first batches are out already
    progress = await _finished(dead_letters, replay_id)

    copies, states = await _copies_and_states(fresh_broker, store)
    replayed = {m for m, state in states.items() if state == "replayed"}
    assert (progress["state"], progress["stopped_reason"]) == ("stopped", "cancelled")
    assert 0 < progress["replayed"] == len(replayed) < 5000
    assert sorted(copies) == sorted(replayed)  # each marked row's copy once, no other copy
    assert set(states.values()) == {"replayed", "dead"}


async def test_a_replay_interrupted_at_full_speed_marks_no_row_whose_copy_is_not_out(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> None:
    await store_letters(store, [arrived(PUSH_COMMANDS, email_send()) for _ in range(5000)])
    dead_letters = DeadLetterStore(
        database_url.replace("+asyncpg", ""), fresh_broker.amqp_url("ops")
    )
    replay_id, _ = await dead_letters.start_replay(
        ReplayOrder(StoreFilter(), actor="ops"), target="all"
    )
    await until(
        lambda: dead_letters.replay(replay_id), lambda r: r["replayed"] > 0, what="progress"
    )

    await dead_letters.aclose()  # the process stops with batches unconfirmed

    copies, states = await _copies_and_states(fresh_broker, store)
    replayed = {m for m, state in states.items() if state == "replayed"}
    assert len(states) == 5000
    assert len(copies) == len(set(copies))  # no copy twice
    assert replayed <= set(copies)  # copies may exceed marks, never trail
    assert set(states.values()) <= {"replayed", "dead"}
    assert replayed
