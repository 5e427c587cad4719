"""Queries of the dead-letter store (design §3 ``/admin/dead-letters*``): filters, pages,
groups, and the indexes that serve them."""

from __future__ import annotations

import asyncpg
import pytest

from shared.dlq import queries
from shared.dlq.queries import StoreFilter
from shared.messaging.topology import EMAIL_COMMANDS, EMAIL_RSVP_EVENTS, PUSH_COMMANDS
from tests.integration.dlq.stored import arrived, store_letters
from tests.support.messages import email_send, rsvp_created

pytestmark = pytest.mark.integration


async def test_filters_and_keyset_pages_pick_exactly_the_matching_letters(
    store: asyncpg.Pool,
) -> None:
    events = [arrived(EMAIL_RSVP_EVENTS, rsvp_created()) for _ in range(5)]
    timeouts = [
        arrived(
            EMAIL_COMMANDS,
            email_send(),
            reason="retries_exhausted",
            error=TimeoutError("smtp timed out"),
        )
        for _ in range(3)
    ]
    await store_letters(store, [*events, *timeouts])

    first = await queries.page(
        store, StoreFilter(queue=EMAIL_RSVP_EVENTS.dead_letter_queue), limit=3
    )
    rest = await queries.page(
        store,
        StoreFilter(queue=EMAIL_RSVP_EVENTS.dead_letter_queue),
        limit=3,
        cursor=first.next_cursor,
    )
    by_reason = await queries.page(store, StoreFilter(reason="retries_exhausted"))
    by_text = await queries.page(store, StoreFilter(q="TIMED OUT"))
    by_type = await queries.page(store, StoreFilter(exception_type="TimeoutError", state="dead"))
    none_replayed = await queries.page(store, StoreFilter(state="replayed"))

    ids = [s.letter.message_id for s in [*first.items, *rest.items]]
    assert ids == [a.letter.message_id for a in events]
    assert rest.next_cursor is None
    assert len(by_reason.items) == len(by_text.items) == len(by_type.items) == 3
    assert none_replayed.items == []


async def test_groups_count_each_failure_once_with_first_last_and_a_sample(
    store: asyncpg.Pool,
) -> None:
    await store_letters(store, [arrived(EMAIL_RSVP_EVENTS, rsvp_created()) for _ in range(4)])
    await store_letters(
        store, [arrived(PUSH_COMMANDS, email_send(), error=ValueError("bad key 42"))]
    )

    groups = await queries.groups(store)
    (largest, smallest) = groups
    in_group = await queries.page(store, StoreFilter(group=largest["group"]))

    assert (largest["count"], smallest["count"]) == (4, 1)
    assert largest["queue"] == EMAIL_RSVP_EVENTS.dead_letter_queue
    assert largest["exception_type"] == "RuntimeError"
    assert "550 no such user" in largest["sample_message"]
    assert largest["first_failed_at"] <= largest["last_failed_at"]
    assert len(in_group.items) == 4
    assert await queries.dead_per_queue(store) == {
        EMAIL_RSVP_EVENTS.dead_letter_queue: 4,
        PUSH_COMMANDS.dead_letter_queue: 1,
    }


async def _plan(db: asyncpg.Pool, sql: str, args: list[object]) -> str:
    rows = await db.fetch("EXPLAIN " + sql, *args)
    return "\n".join(row[0] for row in rows)


async def test_pages_and_groups_are_served_by_indexes(store: asyncpg.Pool) -> None:
    queues = (EMAIL_RSVP_EVENTS, EMAIL_COMMANDS, PUSH_COMMANDS)
    letters = [
        arrived(
            queues[i % 3],
            email_send(),
            reason=f"reason-{i % 7}",
            error=RuntimeError(f"cause {i % 11}x"),
        )
        for i in range(20_000)
    ]
    await store_letters(store, letters)
    await store.execute("ANALYZE dead_letters")
    await store.execute("ANALYZE dead_letter_groups")
    (group, *_) = await queries.groups(store)
    filters = [
        StoreFilter(queue=PUSH_COMMANDS.dead_letter_queue, state="dead"),
        StoreFilter(group=group["group"], state="dead"),
        StoreFilter(reason="reason-3"),
        StoreFilter(exception_type="RuntimeError", type="email.send"),
        StoreFilter(q="cause 7x"),
        StoreFilter(state="dead"),
    ]

    plans = [await _plan(store, *queries.page_query(f, 50, "100")) for f in filters]
    # a handful of groups: the planner may read them whole, so ask whether it can use the index
    async with store.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL enable_seqscan = off")
        groups_plan = await _plan(connection, queries.GROUPS, [None, 100])  # type: ignore[arg-type]

    for selection, plan in zip(filters, plans, strict=True):
        assert "Seq Scan" not in plan, (selection, plan)
        assert "Index" in plan, (selection, plan)
    assert "ix_dead_letter_groups_dead" in groups_plan
