"""``DATABASE_READ_URL``: lag-tolerant reads from a streaming replica, own writes from the primary.

Replay on the replica is paused (``pg_wal_replay_pause()``) to make its lag
visible: what the API then reads from the replica is the state before the
pause, while what a caller must see of its own write still comes back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from calendar_service.config import Settings
from calendar_service.migrate import upgrade_async
from tests.support.api import SUITE_LIMITS, api_client, create_event, post_rsvp, register
from tests.support.polling import until
from tests.support.ports import free_port
from tests.support.replicas import scratch_directory
from tests.support.services import BrokerEnv
from tests.support.streaming_replica import StreamingPair, streaming_pair

# initdb, a base backup, two servers and the migrations start with the first test;
# a loaded machine makes that slow
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@dataclass
class ReadReplica:
    client: httpx.AsyncClient
    #: a session on the replica, to pause its replay and watch who reads there
    replica: asyncpg.Connection
    #: a session on the primary, to change a row behind the API's back
    primary: asyncpg.Connection

    async def pause_replay(self) -> None:
        await self.replica.execute("SELECT pg_wal_replay_pause()")
        await until(
            lambda: self.replica.fetchval("SELECT pg_get_wal_replay_pause_state()"),
            lambda state: state == "paused",
            what="replay paused",
        )

    async def resume_replay(self) -> None:
        await self.replica.execute("SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="module")
async def read_replica(broker: BrokerEnv) -> AsyncIterator[ReadReplica]:
    async with (
        scratch_directory("rsvp-replica-") as directory,
        streaming_pair(directory) as pair,
    ):
        await _create_database(pair, "rsvp")
        settings = Settings(
            app_env="test",
            database_url=pair.dsn(pair.primary_port, "rsvp"),
            database_read_url=pair.dsn(pair.replica_port, "rsvp"),
            amqp_url=broker.amqp_url("calendar"),
            db_pool_size=3,
            **SUITE_LIMITS,
        )
        await upgrade_async(settings.database_url)
        replica = await asyncpg.connect(pair.dsn(pair.replica_port, "rsvp"))
        primary = await asyncpg.connect(pair.dsn(pair.primary_port, "rsvp"))
        try:
            async with api_client(settings) as client:
                yield ReadReplica(client=client, replica=replica, primary=primary)
        finally:
            await replica.execute("SELECT pg_wal_replay_resume()")
            await replica.close()
            await primary.close()


async def _create_database(pair: StreamingPair, name: str) -> None:
    primary = await asyncpg.connect(pair.dsn(pair.primary_port))
    try:
        await primary.execute(f'CREATE DATABASE "{name}"')
    finally:
        await primary.close()


async def test_lists_and_event_pages_are_read_on_the_replica(read_replica: ReadReplica) -> None:
    client = read_replica.client
    organizer = await register(client)
    before = await create_event(client, organizer, title="Before the pause")
    await until(lambda: _listed(client, before["id"]), what="the event on the replica")

    await read_replica.pause_replay()
    try:
        during = await create_event(client, organizer, title="During the pause")
        listed_during_pause = await _listed(client, during["id"])
        # a page of an event the replica has not replayed yet: the primary's
        fresh_page = await client.get(f"/events/{during['id']}")
        # a change the API never saw (so no write mark in the cache): the page is the replica's
        await read_replica.primary.execute(
            "UPDATE events SET title = 'Renamed on the primary' WHERE id = $1",
            uuid.UUID(before["id"]),
        )
        lagging_page = await client.get(f"/events/{before['id']}")
        readers = await read_replica.replica.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'calendar_service.reads' AND datname = 'rsvp'"
        )
    finally:
        await read_replica.resume_replay()

    assert not listed_during_pause, "the list came from the paused replica"
    assert fresh_page.status_code == 200, fresh_page.text
    assert fresh_page.json()["title"] == "During the pause"
    assert (lagging_page.json()["title"], lagging_page.headers["x-cache"]) == (
        "Before the pause",
        "miss",
    )
    assert readers >= 1, "the API's read pool is connected to the replica"
    await until(lambda: _listed(client, during["id"]), what="the event after replay resumed")


async def test_an_rsvp_reads_its_own_write_while_the_replica_lags(
    read_replica: ReadReplica,
) -> None:
    client = read_replica.client
    organizer, guest = await register(client), await register(client)
    event = await create_event(client, organizer)
    await until(lambda: _listed(client, event["id"]), what="the event on the replica")

    await read_replica.pause_replay()
    try:
        answered = await post_rsvp(client, event, guest, "going", 2)
        own = await client.get(f"/rsvps/{answered.json()['id']}", headers=guest["headers"])
        attendees = await client.get(f"/events/{event['id']}/rsvps", headers=organizer["headers"])
        page = await client.get(f"/events/{event['id']}")
        cached_page = await client.get(f"/events/{event['id']}")
    finally:
        await read_replica.resume_replay()

    assert answered.status_code == 201, answered.text
    assert own.status_code == 200, own.text
    assert (own.json()["status"], own.json()["guests"]) == ("going", 2)
    assert own.json()["notifications"] == {"email": "pending", "push": "pending"}
    # the RSVP list tolerates lag: read on the replica, as it stood before the RSVP
    assert attendees.json()["items"] == []
    # the event page was written lately (the RSVP left its mark in the cache): the primary's
    assert (page.headers["x-cache"], page.json()["rsvp_counts"]["going"]) == ("miss", 1)
    assert (cached_page.headers["x-cache"], cached_page.json()["rsvp_counts"]["going"]) == (
        "hit",
        1,
    )


async def test_announcement_progress_right_after_posting_it_is_found(
    read_replica: ReadReplica,
) -> None:
    client = read_replica.client
    organizer = await register(client)
    event = await create_event(client, organizer)

    await read_replica.pause_replay()
    try:
        posted = await client.post(
            f"/events/{event['id']}/announcements",
            json={"subject": "Doors at 7", "body": "See you there."},
            headers=organizer["headers"],
        )
        progress = await client.get(
            f"/events/{event['id']}/announcements/{posted.json()['id']}",
            headers=organizer["headers"],
        )
    finally:
        await read_replica.resume_replay()

    assert posted.status_code == 202, posted.text
    assert progress.status_code == 200, progress.text
    assert progress.json()["id"] == posted.json()["id"]


async def _listed(client: httpx.AsyncClient, event_id: str) -> bool:
    """Whether ``GET /events`` lists the event (every page, in keyset order)."""
    cursor: str | None = None
    while True:
        params = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/events", params=params)).json()
        if any(item["id"] == event_id for item in page["items"]):
            return True
        cursor = page["next_cursor"]
        if cursor is None:
            return False


async def test_reads_go_to_the_primary_while_the_replica_is_away(
    calendar_settings: Settings,
) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/rsvp"
    settings = calendar_settings.model_copy(update={"database_read_url": nowhere})

    async with api_client(settings) as client:
        listed = await client.get("/events", params={"limit": 1})
        ready = await client.get("/readyz")

    assert listed.status_code == 200, listed.text
    assert ready.status_code == 200
    assert "read_replica" in ready.json()["degraded"]
