"""Topic permissions on notify.followups and the admin API's replay account, on the real broker.

Each test loads the definitions into a vhost of its own (``fresh_broker``):
the permissions below are the vhost's and go with it.
"""

from __future__ import annotations

import aiormq
import pytest

from shared.messaging.topology import (
    CALENDAR_FOLLOWUPS,
    DEAD_LETTER_EXCHANGE,
    EMAIL_COMMANDS,
    FOLLOWUPS_EXCHANGE,
)
from tests.support.amqp import channel_as, get_one, publish
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("user", "own", "other"),
    [("email", "email.sent", "push.sent"), ("push", "push.sent", "email.sent")],
)
async def test_a_consumer_may_report_only_its_own_outcomes(
    fresh_broker: BrokerEnv, user: str, own: str, other: str
) -> None:
    async with channel_as(fresh_broker.amqp_url(user)) as channel:
        sent = await publish(channel, FOLLOWUPS_EXCHANGE, own, type=own)
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
            await publish(channel, FOLLOWUPS_EXCHANGE, other, type=other)

    assert "ACCESS_REFUSED" in str(refused.value)
    assert other in str(refused.value)  # the broker names the routing key it refused
    async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
        arrived = await get_one(calendar, CALENDAR_FOLLOWUPS.name)
        assert arrived is not None
        assert arrived.message_id == sent
        await arrived.ack()
        assert await get_one(calendar, CALENDAR_FOLLOWUPS.name, timeout=0.3) is None


async def test_the_replay_account_publishes_a_copy_to_its_origin_queue(
    fresh_broker: BrokerEnv,
) -> None:
    async with channel_as(fresh_broker.amqp_url("dlq-admin")) as channel:
        replayed = await publish(channel, "", EMAIL_COMMANDS.name, type="email.send")

    async with channel_as(fresh_broker.amqp_url("email")) as email:
        arrived = await get_one(email, EMAIL_COMMANDS.name)
        assert arrived is not None
        assert arrived.message_id == replayed
        await arrived.ack()


async def test_the_replay_account_reads_no_queue_and_cannot_dead_letter(
    fresh_broker: BrokerEnv,
) -> None:
    async with channel_as(fresh_broker.amqp_url("dlq-admin")) as channel:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await get_one(channel, EMAIL_COMMANDS.dead_letter_queue, timeout=0)
    async with channel_as(fresh_broker.amqp_url("dlq-admin")) as channel:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await publish(channel, DEAD_LETTER_EXCHANGE, EMAIL_COMMANDS.name)
    async with channel_as(fresh_broker.amqp_url("dlq-admin")) as channel:
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.declare_queue("sneaky", durable=True)
