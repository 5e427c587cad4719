"""A hot event's cache entry expiring under load: one database read rebuilds it, not one per reader.

Two app instances stand for two API replicas sharing PostgreSQL and Redis.
Each counts the statements its engine sends that read the event, so the
test sees every database read of it, on either replica.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import event

from calendar_service.app import create_app
from calendar_service.bootstrap import Container
from calendar_service.config import Settings
from tests.support.api import create_event, register

pytestmark = pytest.mark.integration

READERS = 50
DEADLINE_S = 10.0


class Replica:
    """An in-process API whose event reads (by id) are counted, and whose cache readers too."""

    def __init__(self, client: httpx.AsyncClient, container: Container, event_id: str) -> None:
        self.client = client
        self.event_reads = 0
        self.cache_readers = 0

        def count_reads(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if "FROM events" in statement and event_id in str(params):
                self.event_reads += 1

        event.listen(container.engine.sync_engine, "before_cursor_execute", count_reads)
        read_through = container.cache.read_through

        async def counted(*args: Any) -> tuple[bytes | None, bool]:
            self.cache_readers += 1
            return await read_through(*args)

        container.cache.read_through = counted  # type: ignore[method-assign]


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.005)


async def _replicas(
    stack: AsyncExitStack, settings: Settings, event_id: str, count: int
) -> AsyncIterator[Replica]:
    for _ in range(count):
        app = create_app(settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://api")
        )
        yield Replica(client, app.state.container, event_id)


@pytest.fixture
async def hot_event(client: httpx.AsyncClient) -> str:
    organizer = await register(client, name="Hana Hot")
    created = await create_event(client, organizer, title="Sold-out keynote")
    event_id: str = created["id"]
    return event_id


async def _expire(settings: Settings, event_id: str) -> None:
    """What the TTL does, now: the entry is gone (and the 2 s lock that built it, long since)."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.redis_url)
    async with client:
        await client.delete(f"event:v1:{event_id}", f"event:v1:{event_id}:rebuild")


async def _read_while_the_table_is_held(
    settings: Settings, replicas: list[Replica], event_id: str, readers: int
) -> list[httpx.Response]:
    """``readers`` concurrent GETs, all arriving while the rebuild's read is held up."""
    blocker: asyncpg.Connection = await asyncpg.connect(settings.asyncpg_dsn)
    already = sum(r.cache_readers for r in replicas)
    try:
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            answers = asyncio.gather(
                *(
                    replicas[n % len(replicas)].client.get(f"/events/{event_id}")
                    for n in range(readers)
                )
            )
            await _until(
                lambda: sum(r.cache_readers for r in replicas) >= already + readers,
                "every reader is waiting for the entry",
            )
        return list(await answers)
    finally:
        await blocker.close()


async def test_fifty_readers_after_expiry_cause_one_database_read_across_replicas(
    calendar_settings: Settings, hot_event: str
) -> None:
    async with AsyncExitStack() as stack:
        replicas = [r async for r in _replicas(stack, calendar_settings, hot_event, 2)]
        warm = await replicas[0].client.get(f"/events/{hot_event}")
        assert warm.status_code == 200, warm.text
        await _expire(calendar_settings, hot_event)
        before = sum(r.event_reads for r in replicas)

        responses = await _read_while_the_table_is_held(
            calendar_settings, replicas, hot_event, READERS
        )

    assert [r.status_code for r in responses] == [200] * READERS
    assert len({r.content for r in responses}) == 1
    assert sum(r.event_reads for r in replicas) - before == 1
    misses = [sum(1 for r in responses[n::2] if r.headers["x-cache"] == "miss") for n in (0, 1)]
    assert all(m >= 1 for m in misses), misses  # both replicas missed, one rebuilt for both


async def test_with_redis_away_concurrent_readers_share_one_database_read(
    calendar_settings: Settings, hot_event: str
) -> None:
    nobody_listens = calendar_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    async with AsyncExitStack() as stack:
        [replica] = [r async for r in _replicas(stack, nobody_listens, hot_event, 1)]

        responses = await _read_while_the_table_is_held(nobody_listens, [replica], hot_event, 10)
        reads_for_ten = replica.event_reads
        later = await replica.client.get(f"/events/{hot_event}")

    assert [r.status_code for r in responses] == [200] * 10
    assert {r.headers["x-cache"] for r in responses} == {"miss"}
    assert reads_for_ten == 1
    assert later.headers["x-cache"] == "miss"  # nothing could be cached: read again
    assert replica.event_reads == 2


async def test_a_reader_after_a_write_does_not_join_a_rebuild_that_started_before_it(
    calendar_settings: Settings,
) -> None:
    import uuid

    import redis.asyncio as redis

    from calendar_service.cache import EventCache

    client = redis.Redis.from_url(calendar_settings.redis_url)
    cache, event_id = EventCache(client), uuid.uuid4()
    before_the_write, release = [b'{"going": 1}', b'{"going": 2}'], asyncio.Event()
    loads: list[bytes] = []

    async def load() -> bytes | None:
        body = before_the_write[len(loads)]
        loads.append(body)
        if len(loads) == 1:
            await release.wait()  # the first rebuild reads, then stalls past the write
        return body

    async with client:
        early = asyncio.create_task(cache.read_through(event_id, load))
        await _until(lambda: len(loads) == 1, "the first rebuild has read")
        await cache.invalidate(event_id)  # a write committed meanwhile
        late, _ = await cache.read_through(event_id, load)
        release.set()
        early_body, _ = await early
        cached = await client.get(f"event:v1:{event_id}")
        await client.delete(f"event:v1:{event_id}")

    assert early_body == b'{"going": 1}'
    assert late == cached == b'{"going": 2}'  # the stale rebuild was neither joined nor cached
