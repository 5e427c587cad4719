"""The archiver (design §9): every dead letter stored once, with its facts and its group."""

from __future__ import annotations

import asyncpg
import pytest

from calendar_service.deadletters.archiver import ArchiverSettings
from shared.dlq.archive import ArrivedLetter, archive, prune_settled
from shared.messaging.topology import EMAIL_COMMANDS, EMAIL_RSVP_EVENTS, PUSH_COMMANDS
from tests.integration.dlq.stored import arrived, store_letters
from tests.support.dlq import (
    archive_dead_letters,
    archiver_settings,
    dead_letter,
    depth,
    running_archiver,
)
from tests.support.messages import email_send, rsvp_created
from tests.support.polling import until
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


async def _stored(store: asyncpg.Pool) -> int:
    return int(await store.fetchval("SELECT count(*) FROM dead_letters"))


async def test_every_dead_letter_is_stored_with_its_facts_and_acked(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> None:
    events = [rsvp_created() for _ in range(3)]
    commands = [email_send() for _ in range(2)]
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, events, reasons=("invalid_recipient",))
    await dead_letter(fresh_broker, EMAIL_COMMANDS, commands, reasons=("retries_exhausted",))

    async with running_archiver(archiver_settings(fresh_broker, database_url)):
        await until(lambda: _stored(store), lambda n: n == 5, what="5 stored letters")
        await until(
            lambda: depth(fresh_broker, EMAIL_RSVP_EVENTS.dead_letter_queue, "ops"),
            lambda n: n == 0,
            what="an empty DLQ",
        )

    row = await store.fetchrow(
        "SELECT * FROM dead_letters WHERE message_id = $1", str(events[0].message_id)
    )
    assert row is not None
    assert row["queue"] == EMAIL_RSVP_EVENTS.dead_letter_queue
    assert row["type"] == "rsvp.created"
    assert row["reason"] == "invalid_recipient"
    assert row["exception_type"] == "RuntimeError"
    assert row["exception_message"] == "failure 0"
    assert row["attempts"] == 1
    assert row["failed_at"] is not None
    assert row["original_queue"] == EMAIL_RSVP_EVENTS.name
    assert row["state"] == "dead"
    assert b"rsvp.created" in row["body"]
    assert await depth(fresh_broker, EMAIL_COMMANDS.dead_letter_queue, "ops") == 0


async def test_the_same_failure_of_different_messages_is_one_group(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> None:
    # "failure 0" .. "failure 9": the numbers differ, the failure does not
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [rsvp_created() for _ in range(10)])

    await archive_dead_letters(fresh_broker, database_url)

    groups = await store.fetch("SELECT * FROM dead_letter_groups")
    assert len(groups) == 1
    assert groups[0]["dead"] == groups[0]["total"] == 10
    assert groups[0]["exception_type"] == "RuntimeError"


async def test_a_redelivery_after_a_crash_between_commit_and_ack_is_stored_once(
    fresh_broker: BrokerEnv, database_url: str, store: asyncpg.Pool
) -> None:
    await dead_letter(fresh_broker, EMAIL_RSVP_EVENTS, [rsvp_created() for _ in range(3)])
    await archive_dead_letters(fresh_broker, database_url)
    # what a crashed archiver committed but never acked: the same deliveries come again
    rows = await store.fetch("SELECT * FROM dead_letters")
    again = [
        ArrivedLetter.read(
            r["queue"],
            {"x-failed-at": r["failed_at"].isoformat(), "x-original-queue": r["original_queue"]},
            r["body"],
            message_id=r["message_id"],
            message_type=r["type"],
            properties={},
        )
        for r in rows
    ]

    new = await archive(store, again)

    assert new == 0
    assert await _stored(store) == 3
    assert await store.fetchval("SELECT total FROM dead_letter_groups") == 3


async def test_retention_removes_only_replayed_and_deleted_letters_settled_long_ago(
    store: asyncpg.Pool,
) -> None:
    letters = [arrived(PUSH_COMMANDS, email_send()) for _ in range(6)]
    await store_letters(store, letters)
    ids = [r["id"] for r in await store.fetch("SELECT id FROM dead_letters ORDER BY id")]
    for state, days_ago, picked in (("replayed", 31, ids[:2]), ("deleted", 31, ids[2:3]),
                                    ("deleted", 1, ids[3:4])):  # fmt: skip
        await store.execute(
            "UPDATE dead_letters SET state = $1, changed_at = now() - make_interval(days => $2)"
            " WHERE id = ANY($3)",
            state,
            days_ago,
            picked,
        )

    removed = await prune_settled(store, older_than_s=30 * 86400, batch=2)

    left = await store.fetch("SELECT id, state FROM dead_letters ORDER BY id")
    assert removed == 3
    assert [(r["id"], r["state"]) for r in left] == [
        (ids[3], "deleted"),
        (ids[4], "dead"),
        (ids[5], "dead"),
    ]
    group = await store.fetchrow("SELECT dead, total FROM dead_letter_groups")
    assert (group["dead"], group["total"]) == (2, 3)
    assert ArchiverSettings(dead_letter_retention="30d").dead_letter_retention == 30 * 86400  # type: ignore[arg-type]
