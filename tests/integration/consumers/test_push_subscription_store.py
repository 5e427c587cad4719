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
import pytest

from push_consumer.store import PostgresSubscriptionStore
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
    counting = CountingPool(pool)
    counting.hold = asyncio.Event()
    hold = counting.hold
    store = PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)

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


async def test_a_statement_that_cannot_reach_the_database_is_not_attempted_for_each_lookup(
    pool: asyncpg.Pool,
) -> None:
    counting = CountingPool(pool, fail_with=ConnectionRefusedError("database away"))
    store = PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)

    outcomes = await asyncio.gather(
        *(store.devices_for(uuid.uuid4(), uuid.uuid4()) for _ in range(3)),
        return_exceptions=True,
    )

    assert counting.statements == [3]
    assert all(isinstance(outcome, NotAttempted) for outcome in outcomes), outcomes


async def test_a_caller_that_goes_away_leaves_the_others_their_answer(pool: asyncpg.Pool) -> None:
    user, (device,) = await user_with_devices(pool, 1)
    counting = CountingPool(pool)
    counting.hold = asyncio.Event()
    hold = counting.hold
    store = PostgresSubscriptionStore(cast(asyncpg.Pool, counting), ledger=LEDGER)

    leaving = asyncio.create_task(store.devices_for(user, uuid.uuid4()))
    staying = asyncio.create_task(store.devices_for(user, uuid.uuid4()))
    await counting.on_the_wire.wait()
    leaving.cancel()
    hold.set()

    assert [d.target.subscription_id for d in await staying] == [device]
    assert leaving.cancelled()
    assert counting.statements == [2]
