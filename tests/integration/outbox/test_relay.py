"""The outbox relay publishes every committed message, once per row, whatever the broker does."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import pytest
from aio_pika.exceptions import DeliveryError
from sqlalchemy.ext.asyncio import create_async_engine

from calendar_service.config import Settings
from calendar_service.db.uow import UnitOfWork
from calendar_service.relay import OutboxRelay, RelayOptions, bootstrap
from shared.management import ManagementClient
from shared.messaging.publisher import Publisher
from shared.messaging.topology import (
    EMAIL_COMMANDS,
    EMAIL_RSVP_EVENTS,
    EVENTS_EXCHANGE,
    PUSH_RSVP_EVENTS,
)
from shared.schemas import Envelope
from shared.service.process import serve
from tests.support.amqp import channel_as, publish
from tests.support.messages import email_send, rsvp_created
from tests.support.pipeline import take_all
from tests.support.polling import until
from tests.support.proxy import CuttableProxy
from tests.support.services import BrokerEnv, as_role

pytestmark = pytest.mark.integration


async def write_outbox(database_url: str, count: int) -> list[str]:
    """Commit ``count`` RSVP messages through the unit of work; returns their ids."""
    engine = create_async_engine(database_url)
    messages = [rsvp_created() for _ in range(count)]
    try:
        async with UnitOfWork(engine) as uow:
            await uow.outbox.add(*messages)
            await uow.commit()
    finally:
        await engine.dispose()
    return [str(m.message_id) for m in messages]


async def unpublished(database_url: str) -> int:
    dsn = database_url.replace("+asyncpg", "")
    connection = await asyncpg.connect(dsn)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        return count
    finally:
        await connection.close()


async def drain(broker: BrokerEnv, user: str, queue: str, *, idle: float = 1.0) -> list[str]:
    """Every message id waiting in ``queue``, acked; stops after ``idle`` s of silence."""
    return [str(m.message_id) for m in await take_all(broker, user, queue, idle=idle)]


async def wait_until_all_published(database_url: str, *, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await unpublished(database_url):
            await asyncio.sleep(0.1)


#: Polls often, so a test never waits on the safety-net timer.
FAST = RelayOptions(idle_poll_s=0.5)


def settings_for(database_url: str, amqp_url: str) -> Settings:
    """The relay's settings: its own database role, as in production."""
    return Settings(
        app_env="test", database_url=as_role(database_url, "rsvp_relay"), amqp_url=amqp_url
    )


async def test_messages_saved_while_the_broker_was_down_are_all_published_once_it_is_back(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    proxy = CuttableProxy(fresh_broker.host, fresh_broker.port)
    await proxy.start()
    await proxy.cut()  # the broker is "down" before the relay even starts
    url = fresh_broker.amqp_url("calendar").replace(f":{fresh_broker.port}/", f":{proxy.port}/")
    stop = asyncio.Event()
    relay = asyncio.create_task(
        serve(lambda: bootstrap(settings_for(relay_db, url), options=FAST), stop, metrics_port=None)
    )
    try:
        expected = await write_outbox(relay_db, 25)
        await asyncio.sleep(1.5)
        assert await unpublished(relay_db) == 25  # nothing lost, nothing sent yet

        await proxy.start()  # the broker comes back
        await wait_until_all_published(relay_db, timeout=30)
    finally:
        stop.set()
        await asyncio.wait_for(relay, timeout=10)
        await proxy.cut()

    received = await drain(fresh_broker, "email", EMAIL_RSVP_EVENTS.name)
    assert Counter(received) == Counter(expected)


async def test_relay_survives_a_connection_drop_and_publishes_what_came_after(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    proxy = CuttableProxy(fresh_broker.host, fresh_broker.port)
    await proxy.start()
    url = fresh_broker.amqp_url("calendar").replace(f":{fresh_broker.port}/", f":{proxy.port}/")
    stop = asyncio.Event()
    relay = asyncio.create_task(
        serve(lambda: bootstrap(settings_for(relay_db, url), options=FAST), stop, metrics_port=None)
    )
    try:
        before = await write_outbox(relay_db, 5)
        await wait_until_all_published(relay_db, timeout=15)
        await proxy.cut()  # connection dropped under the relay's feet
        during = await write_outbox(relay_db, 10)
        await asyncio.sleep(1.0)
        await proxy.start()
        await wait_until_all_published(relay_db, timeout=40)
    finally:
        stop.set()
        await asyncio.wait_for(relay, timeout=10)
        await proxy.cut()

    received = await drain(fresh_broker, "push", PUSH_RSVP_EVENTS.name)
    assert set(received) == set(before + during)
    assert len(received) == len(set(received))


async def test_relay_survives_its_database_connections_terminated_and_publishes_what_came_after(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    """A backend terminated under the relay (between passes or within one, which leaves
    asyncpg mid-error: "another operation is in progress") costs a pass, not the process."""
    stop = asyncio.Event()
    settings = settings_for(relay_db, fresh_broker.amqp_url("calendar"))
    relay = asyncio.create_task(
        serve(lambda: bootstrap(settings, options=FAST), stop, metrics_port=None)
    )
    admin = await asyncpg.connect(relay_db.replace("+asyncpg", ""))
    try:
        before = await write_outbox(relay_db, 3)
        await wait_until_all_published(relay_db, timeout=15)
        for _ in range(3):  # now idle, now within a pass: each a fresh connection after
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE usename = 'rsvp_relay' AND datname = current_database()"
            )
            assert terminated >= 1
            await asyncio.sleep(0.3)
        after = await write_outbox(relay_db, 5)
        await wait_until_all_published(relay_db, timeout=40)
        assert not relay.done(), relay
    finally:
        await admin.close()
        stop.set()
        await asyncio.wait_for(relay, timeout=10)

    received = await drain(fresh_broker, "email", EMAIL_RSVP_EVENTS.name)
    assert set(before + after) <= set(received)


async def test_a_pass_on_a_connection_left_mid_error_costs_the_pass_not_the_relay(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    """A backend terminated between two statements of a pass leaves asyncpg's protocol
    mid-error, and the pass's next statement raises ``InternalClientError`` ("another
    operation is in progress"). Seen in the fault tests: the relay process died of it."""
    pool = await asyncpg.create_pool(relay_db.replace("+asyncpg", ""), min_size=1, max_size=2)
    try:
        async with channel_as(fresh_broker.amqp_url("calendar")) as channel:
            relay = OutboxRelay(pool, Publisher(channel), FAST)
            real_pass = relay.publish_pending_outbox
            failed = []

            async def pass_once_broken(*args: Any, **kwargs: Any) -> Any:
                if not failed:
                    failed.append(True)
                    raise asyncpg.InternalClientError(
                        "cannot switch to state 15; another operation (2) is in progress"
                    )
                return await real_pass(*args, **kwargs)

            relay.publish_pending_outbox = pass_once_broken  # type: ignore[method-assign]
            running = asyncio.create_task(relay.run())
            try:
                expected = await write_outbox(relay_db, 3)
                await wait_until_all_published(relay_db, timeout=20)
                assert failed
                assert not running.done(), running
            finally:
                relay.stop()
                await asyncio.wait_for(running, timeout=10)
    finally:
        await pool.close()

    received = await drain(fresh_broker, "email", EMAIL_RSVP_EVENTS.name)
    assert Counter(received) == Counter(expected)


async def test_two_relays_running_together_publish_each_row_once(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    expected = await write_outbox(relay_db, 300)
    pool = await asyncpg.create_pool(relay_db.replace("+asyncpg", ""), min_size=2, max_size=4)
    try:
        async with (
            channel_as(fresh_broker.amqp_url("calendar")) as first,
            channel_as(fresh_broker.amqp_url("calendar")) as second,
        ):
            relays = [
                OutboxRelay(pool, Publisher(channel), RelayOptions(batch_size=20))
                for channel in (first, second)
            ]

            async def run_until_empty(relay: OutboxRelay) -> int:
                published = 0
                while (result := await relay.publish_pending_outbox()).claimed:
                    published += result.published
                return published

            counts = await asyncio.gather(*(run_until_empty(r) for r in relays))
    finally:
        await pool.close()

    received = await drain(fresh_broker, "push", PUSH_RSVP_EVENTS.name)
    assert sum(counts) == 300
    assert all(count > 0 for count in counts), "both relays should have taken a share"
    assert Counter(received) == Counter(expected)  # each exactly once


async def write_messages(database_url: str, messages: list[Envelope[Any]]) -> None:
    engine = create_async_engine(database_url)
    try:
        async with UnitOfWork(engine) as uow:
            await uow.outbox.add(*messages)
            await uow.commit()
    finally:
        await engine.dispose()


async def operator_policy_is(
    admin: ManagementClient, vhost: str, queue: str, policy: str | None
) -> None:
    """Wait until the queue itself reports ``policy`` as its operator policy (None: none).

    The management API shows what the queue last reported (every few seconds),
    so this waits for the queue to have taken the change, not for the API call.
    """

    async def reported() -> bool:
        return (await admin.queue(vhost, queue)).get("operator_policy") == policy

    await until(reported, timeout=30, interval=0.2, what=f"operator policy {policy!r} on {queue}")


async def fill_until_refused(broker: BrokerEnv) -> None:
    """Publish RSVP events until the capped push queue makes the broker nack one."""
    async with channel_as(broker.amqp_url("calendar")) as channel:
        for _ in range(50):
            try:
                await publish(
                    channel, EVENTS_EXCHANGE, "", rsvp_created().model_dump_json().encode()
                )
            except DeliveryError:
                return
    raise AssertionError("the broker never refused a publish")


async def test_nacked_messages_are_republished_and_the_confirmed_ones_are_not(
    relay_db: str, fresh_broker: BrokerEnv
) -> None:
    # push.rsvp_events is capped and full, so the broker nacks every RSVP event
    # (x-overflow: reject-publish); commands go elsewhere and are confirmed. An
    # operator policy, because it caps the queue's own x-max-length argument.
    async with ManagementClient(fresh_broker.admin_url) as admin:
        await admin.set_operator_policy(
            fresh_broker.vhost,
            "push-full",
            {
                "pattern": r"^push\.rsvp_events$",
                "definition": {"max-length": 3},
                "apply-to": "queues",
            },
        )
        await operator_policy_is(admin, fresh_broker.vhost, PUSH_RSVP_EVENTS.name, "push-full")
    await fill_until_refused(fresh_broker)
    events = [rsvp_created() for _ in range(5)]
    commands = [email_send() for _ in range(5)]
    interleaved = [m for pair in zip(events, commands, strict=True) for m in pair]
    await write_messages(relay_db, interleaved)
    event_ids = {str(m.message_id) for m in events}
    command_ids = {str(m.message_id) for m in commands}

    pool = await asyncpg.create_pool(relay_db.replace("+asyncpg", ""), min_size=1, max_size=2)
    try:
        async with channel_as(fresh_broker.amqp_url("calendar")) as channel:
            relay = OutboxRelay(pool, Publisher(channel), RelayOptions(batch_size=10))
            first = await relay.publish_pending_outbox()

            async with ManagementClient(fresh_broker.admin_url) as admin:
                await admin.delete_operator_policy(fresh_broker.vhost, "push-full")
                await operator_policy_is(admin, fresh_broker.vhost, PUSH_RSVP_EVENTS.name, None)
                await admin.purge_queue(fresh_broker.vhost, PUSH_RSVP_EVENTS.name)
            second = await relay.publish_pending_outbox()
    finally:
        await pool.close()

    assert (first.claimed, first.published) == (10, 5)
    assert (second.claimed, second.published) == (5, 5)
    assert await unpublished(relay_db) == 0
    # the confirmed commands were not published again
    assert Counter(await drain(fresh_broker, "email", EMAIL_COMMANDS.name)) == Counter(command_ids)
    # the nacked events reached push once, on the second pass
    assert Counter(await drain(fresh_broker, "push", PUSH_RSVP_EVENTS.name)) == Counter(event_ids)
    # email took every publish, so it saw the nacked events twice: at least once, never lost
    email = Counter(await drain(fresh_broker, "email", EMAIL_RSVP_EVENTS.name))
    assert all(email[i] == 2 for i in event_ids)
