"""broker/definitions.json, loaded into a throw-away vhost, behaves as design §4 says."""

from __future__ import annotations

import asyncio
import time

import aiormq
import pytest

from shared.management import ManagementClient
from shared.messaging.topology import (
    COMMANDS_EXCHANGE,
    DEAD_LETTER_EXCHANGE,
    DELIVERY_LIMIT,
    EMAIL_COMMANDS,
    EMAIL_RSVP_EVENTS,
    EVENTS_EXCHANGE,
    FOLLOWUPS_EXCHANGE,
    PUSH_RSVP_EVENTS,
    RETRY_DELAYS_S,
    WORK_QUEUES,
)
from tests.support.amqp import channel_as, get_one, publish
from tests.support.dlq import depth
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration

ALL_WORK_QUEUES = [q.name for q in WORK_QUEUES]


async def test_work_queues_are_quorum_with_delivery_limit_and_safe_dead_lettering(
    fresh_broker: BrokerEnv,
) -> None:
    async with ManagementClient(fresh_broker.admin_url) as admin:
        queues = {q["name"]: q for q in await admin.queues(fresh_broker.vhost)}

    for name in ALL_WORK_QUEUES:
        arguments = queues[name]["arguments"]
        assert queues[name]["type"] == "quorum"
        assert arguments["x-delivery-limit"] == DELIVERY_LIMIT
        assert arguments["x-dead-letter-exchange"] == DEAD_LETTER_EXCHANGE
        assert arguments["x-dead-letter-routing-key"] == name
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
        assert arguments["x-overflow"] == "reject-publish"
        assert queues[f"{name}.dlq"]["type"] == "quorum"


async def test_rsvp_event_is_broadcast_once_to_email_and_push(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("calendar")) as ch:
        message_id = await publish(ch, EVENTS_EXCHANGE, "", b"{}", type="rsvp.created")

    async with channel_as(fresh_broker.amqp_url("email")) as email:
        got = await get_one(email, EMAIL_RSVP_EVENTS.name)
        assert got is not None
        assert got.message_id == message_id
        await got.ack()
        assert await get_one(email, EMAIL_RSVP_EVENTS.name, timeout=0.3) is None
    async with channel_as(fresh_broker.amqp_url("push")) as push:
        got = await get_one(push, PUSH_RSVP_EVENTS.name)
        assert got is not None
        assert got.message_id == message_id
        await got.ack()
        assert await get_one(push, PUSH_RSVP_EVENTS.name, timeout=0.3) is None


async def test_command_reaches_exactly_one_queue(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("calendar")) as ch:
        message_id = await publish(ch, COMMANDS_EXCHANGE, EMAIL_COMMANDS.name, type="email.send")

    await asyncio.sleep(0.5)  # let any wrong route land before counting
    async with ManagementClient(fresh_broker.admin_url) as admin:
        holding = [
            q["name"]
            for q in await admin.queues(fresh_broker.vhost)
            if q.get("messages", 0) + q.get("messages_ready", 0) > 0
        ]
    async with channel_as(fresh_broker.amqp_url("email")) as email:
        got = await get_one(email, EMAIL_COMMANDS.name)
    assert got is not None
    assert got.message_id == message_id
    assert holding in ([], [EMAIL_COMMANDS.name])  # stats may lag; never another queue


async def test_follow_up_reaches_the_calendar_service(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("email")) as ch:
        message_id = await publish(ch, FOLLOWUPS_EXCHANGE, "email.sent", type="email.sent")
    async with channel_as(fresh_broker.amqp_url("calendar")) as ch:
        got = await get_one(ch, "calendar.followups")
    assert got is not None
    assert got.message_id == message_id


async def test_message_in_a_retry_queue_returns_to_its_origin_after_the_delay(
    fresh_broker: BrokerEnv,
) -> None:
    retry_queue = EMAIL_RSVP_EVENTS.retry_queue(RETRY_DELAYS_S[0])
    assert retry_queue.endswith(".retry.1s")

    async with channel_as(fresh_broker.amqp_url("email")) as ch:
        started = time.monotonic()
        message_id = await publish(ch, EMAIL_RSVP_EVENTS.retry_exchange, retry_queue)
        back = await get_one(ch, EMAIL_RSVP_EVENTS.name, timeout=30)
        waited = time.monotonic() - started

    assert back is not None, "the message never came back from the retry queue"
    assert back.message_id == message_id
    # Timed from before the publish, so a slow round trip only ever adds to it: a
    # message that skipped its delay is back in well under 0.9 s, one that took it never.
    assert waited >= 0.9, "the message skipped its delay"
    assert waited < 30


async def test_rejected_message_is_dead_lettered_to_its_queues_dlq_with_x_death(
    fresh_broker: BrokerEnv,
) -> None:
    async with channel_as(fresh_broker.amqp_url("calendar")) as ch:
        message_id = await publish(ch, COMMANDS_EXCHANGE, EMAIL_COMMANDS.name)
    async with channel_as(fresh_broker.amqp_url("email")) as ch:
        got = await get_one(ch, EMAIL_COMMANDS.name)
        assert got is not None
        await got.reject(requeue=False)

    async with channel_as(fresh_broker.amqp_url("ops")) as ops:
        dead = await get_one(ops, EMAIL_COMMANDS.dead_letter_queue)
    assert dead is not None
    assert dead.message_id == message_id
    x_death = dead.headers["x-death"]
    assert isinstance(x_death, list)
    death = x_death[0]
    assert isinstance(death, dict)
    assert death["queue"] == EMAIL_COMMANDS.name
    assert death["reason"] == "rejected"


async def test_poison_message_is_dead_lettered_by_the_delivery_limit(
    fresh_broker: BrokerEnv,
) -> None:
    async with channel_as(fresh_broker.amqp_url("calendar")) as ch:
        message_id = await publish(ch, COMMANDS_EXCHANGE, EMAIL_COMMANDS.name)

    async with channel_as(fresh_broker.amqp_url("email")) as ch:
        deliveries = 0
        # redelivered until the broker dead-letters it; a slow redelivery is not the end
        deadline = time.monotonic() + 60
        while not await depth(fresh_broker, EMAIL_COMMANDS.dead_letter_queue, "ops"):
            assert time.monotonic() < deadline, f"not dead-lettered after {deliveries} deliveries"
            if (got := await get_one(ch, EMAIL_COMMANDS.name, timeout=0.5)) is not None:
                deliveries += 1
                await got.nack(requeue=True)  # as if the consumer crashed every time
                assert deliveries <= DELIVERY_LIMIT + 1

    async with channel_as(fresh_broker.amqp_url("ops")) as ops:
        dead = await get_one(ops, EMAIL_COMMANDS.dead_letter_queue)
    assert dead is not None
    assert dead.message_id == message_id
    assert deliveries == DELIVERY_LIMIT + 1
    death = dead.headers["x-death"][0]  # type: ignore[index]
    assert death["reason"] == "delivery_limit"  # type: ignore[index,call-overload]


async def test_email_user_cannot_publish_rsvp_events(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("email")) as ch:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await publish(ch, EVENTS_EXCHANGE, "")


@pytest.mark.parametrize("queue", [PUSH_RSVP_EVENTS.name, "push.commands"])
async def test_email_user_cannot_read_push_queues(fresh_broker: BrokerEnv, queue: str) -> None:
    async with channel_as(fresh_broker.amqp_url("email")) as ch:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await get_one(ch, queue, timeout=0)


@pytest.mark.parametrize(
    ("user", "queue"),
    [
        ("push", EMAIL_RSVP_EVENTS.name),
        ("calendar", EMAIL_RSVP_EVENTS.name),
        ("email", EMAIL_RSVP_EVENTS.dead_letter_queue),
        ("email", "calendar.followups"),
    ],
)
async def test_services_read_only_their_own_queues(
    fresh_broker: BrokerEnv, user: str, queue: str
) -> None:
    async with channel_as(fresh_broker.amqp_url(user)) as ch:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await get_one(ch, queue, timeout=0)


async def test_push_user_cannot_schedule_email_retries(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("push")) as ch:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await publish(
                ch,
                EMAIL_RSVP_EVENTS.retry_exchange,
                EMAIL_RSVP_EVENTS.retry_queue(RETRY_DELAYS_S[0]),
            )


async def test_no_service_may_change_the_topology(fresh_broker: BrokerEnv) -> None:
    async with channel_as(fresh_broker.amqp_url("calendar")) as ch:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await ch.declare_queue("sneaky", durable=True)
