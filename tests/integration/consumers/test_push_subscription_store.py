"""Push subscription lookups: asked together, one statement; each caller gets its own rows.

Against the run's migrated database. The pool is wrapped only to count (and,
in one test, hold) the statements that reach it; the rows are PostgreSQL's.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import orjson
import pytest

from push_consumer.store import _SUBSCRIPTIONS, PostgresSubscriptionStore
from shared.messaging.errors import NotAttempted

pytestmark = pytest.mark.integration

LEDGER = "push/push.rsvp_events"


class CountingPool:
    """Passes ``fetch`` on to a real pool, counting statements; ``hold`` keeps the next back."""

    def __init__(self, pool: asyncpg.Pool, *, fail_with: Exception | None = None) -> None:
        self._pool = pool
        self._fail_with = fail_with
        self.statements: list[int] = []  #: lookups per statement, in order
        self.hold: asyncio.Event | None = None
        self.on_the_wire = asyncio.Event()

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append(len(args[0]))
        self.on_the_wire.set()
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        if self._fail_with is not None:
            raise self._fail_with
        return await self._pool.fetch(query, *args)


def store_holding_its_first_statement(
    pool: asyncpg.Pool,
) -> tuple[CountingPool, asyncio.Event, PostgresSubscriptionStore]:
    """A store whose first statement waits on the wire until the returned event is set."""
    counting = CountingPool(pool)
    counting.hold = hold = asyncio.Event()
    return counting, hold, PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(
        database_url.replace("+asyncpg", ""), min_size=1, max_size=2
    ) as pool:
        yield pool


async def user_with_devices(pool: asyncpg.Pool, count: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A user and ``count`` subscriptions, oldest first."""
    user = uuid.uuid4()
    await pool.execute(
        "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, 'Ada', '-')",
        user,
        f"{user.hex}@example.com",
    )
    devices = [uuid.uuid4() for _ in range(count)]
    for n, device in enumerate(devices):
        await pool.execute(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth, created_at)"
            " VALUES ($1, $2, $3, 'key', 'auth', now() - make_interval(secs => $4))",
            device,
            user,
            f"https://push.example/{device}",
            float(count - n),
        )
    return user, devices


async def test_lookups_asked_together_share_one_statement_and_each_gets_its_own_devices(
    pool: asyncpg.Pool,
) -> None:
    first, (reached, not_yet) = await user_with_devices(pool, 2)
    second, _ = await user_with_devices(pool, 0)
    third, (only,) = await user_with_devices(pool, 1)
    message, other_message = uuid.uuid4(), uuid.uuid4()
    await pool.execute(
        "INSERT INTO push_deliveries (consumer, message_id, subscription_id) VALUES ($1, $2, $3)",
        LEDGER,
        message,
        reached,
    )
    counting = CountingPool(pool)
    store = PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)

    of_first, of_second, of_third = await asyncio.gather(
        store.devices_for(first, message),
        store.devices_for(second, message),
        store.devices_for(third, other_message),
    )

    assert counting.statements == [3]
    assert [(d.target.subscription_id, d.already_sent) for d in of_first] == [
        (reached, True),
        (not_yet, False),
    ]
    assert of_second == []
    assert [(d.target.subscription_id, d.already_sent) for d in of_third] == [(only, False)]
    assert of_third[0].target.endpoint == f"https://push.example/{only}"


async def test_lookups_asked_while_a_statement_is_on_the_wire_go_together_in_the_next(
    pool: asyncpg.Pool,
) -> None:
    user, (device,) = await user_with_devices(pool, 1)
    counting, hold, store = store_holding_its_first_statement(pool)

    first = asyncio.create_task(store.devices_for(user, uuid.uuid4()))
    await counting.on_the_wire.wait()
    later = [asyncio.create_task(store.devices_for(user, uuid.uuid4())) for _ in range(2)]
    await asyncio.sleep(0.05)  # they stay waiting while the first statement is held
    assert counting.statements == [1]
    assert not any(task.done() for task in later)
    hold.set()

    answers = await asyncio.gather(first, *later)
    assert counting.statements == [1, 2]
    assert [[d.target.subscription_id for d in a] for a in answers] == [[device]] * 3


@pytest.mark.parametrize(
    ("failure", "each_caller_gets"),
    [
        (ConnectionRefusedError("database away"), NotAttempted),  # held, no attempt counted
        (ValueError("a bug of ours"), ValueError),  # not the database away: passed on unchanged
    ],
)
async def test_a_failed_statement_fails_every_lookup_in_it(
    pool: asyncpg.Pool, failure: Exception, each_caller_gets: type[Exception]
) -> None:
    counting = CountingPool(pool, fail_with=failure)
    store = PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)

    outcomes = await asyncio.gather(
        *(store.devices_for(uuid.uuid4(), uuid.uuid4()) for _ in range(3)),
        return_exceptions=True,
    )

    assert counting.statements == [3]
    assert [type(outcome) for outcome in outcomes] == [each_caller_gets] * 3


async def test_a_caller_that_goes_away_leaves_the_others_their_answer(pool: asyncpg.Pool) -> None:
    user, (device,) = await user_with_devices(pool, 1)
    counting, hold, store = store_holding_its_first_statement(pool)

    leaving = asyncio.create_task(store.devices_for(user, uuid.uuid4()))
    staying = asyncio.create_task(store.devices_for(user, uuid.uuid4()))
    await counting.on_the_wire.wait()
    leaving.cancel()
    hold.set()

    assert [d.target.subscription_id for d in await staying] == [device]
    assert leaving.cancelled()
    assert counting.statements == [2]


async def test_the_same_lookup_twice_in_one_statement_answers_both(pool: asyncpg.Pool) -> None:
    user, (device,) = await user_with_devices(pool, 1)
    counting = CountingPool(pool)
    store = PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)
    message = uuid.uuid4()

    first, second = await asyncio.gather(
        store.devices_for(user, message), store.devices_for(user, message)
    )

    assert counting.statements == [2]
    assert [d.target.subscription_id for d in first] == [device]
    assert [d.target.subscription_id for d in second] == [device]


@pytest.mark.parametrize("when", ["before its first step", "with a statement on the wire"])
async def test_lookups_of_a_cancelled_statement_are_not_attempted_and_the_next_ones_work(
    pool: asyncpg.Pool, when: str
) -> None:
    """The consumer stopping cancels every task, the store's own among them
    (reached here through its private handle: nothing public cancels it)."""
    user, (device,) = await user_with_devices(pool, 1)
    counting, _, store = store_holding_its_first_statement(pool)

    waiting = [asyncio.create_task(store.devices_for(user, uuid.uuid4())) for _ in range(2)]
    if when == "before its first step":
        await asyncio.sleep(0)  # the callers have asked; the store's task has not run yet
    else:
        await counting.on_the_wire.wait()
    assert store._looking_up is not None
    store._looking_up.cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)

    assert all(isinstance(outcome, NotAttempted) for outcome in outcomes), outcomes
    counting.hold = None
    later = await asyncio.wait_for(store.devices_for(user, uuid.uuid4()), 5)
    assert [d.target.subscription_id for d in later] == [device]


async def test_each_lookup_probes_the_indexes_even_on_tables_never_analyzed(
    pool: asyncpg.Pool,
) -> None:
    """A new database, minutes after a deploy, has no statistics yet: the statement
    must still probe ``user_id`` and the ledger's key, not scan both tables.
    Temporary tables of the same shape (searched first, never auto-analyzed)."""
    async with pool.acquire() as connection:
        for table in ("push_subscriptions", "push_deliveries"):
            await connection.execute(
                f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)"
            )
        try:
            await connection.execute(
                "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)"
                " SELECT gen_random_uuid(), gen_random_uuid(), 'https://push.example/' || n,"
                " 'key', 'auth' FROM generate_series(1, 20000) n"
            )
            await connection.execute(
                "INSERT INTO push_deliveries (consumer, message_id, subscription_id)"
                " SELECT $1, gen_random_uuid(), id FROM push_subscriptions, generate_series(1, 10)",
                LEDGER,
            )
            users = [uuid.uuid4() for _ in range(8)]
            messages = [uuid.uuid4() for _ in range(8)]
            plan = await connection.fetchval(
                f"EXPLAIN (FORMAT JSON) {_SUBSCRIPTIONS}", users, messages, LEDGER
            )
        finally:
            for table in ("push_subscriptions", "push_deliveries"):
                await connection.execute(f"DROP TABLE IF EXISTS pg_temp.{table}")

    scans = {
        (node["Node Type"], node.get("Relation Name"))
        for node in plan_nodes(orjson.loads(plan)[0]["Plan"])
        if "Relation Name" in node
    }
    assert ("Seq Scan", "push_subscriptions") not in scans, scans
    assert ("Seq Scan", "push_deliveries") not in scans, scans


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in plan_nodes(child))]
