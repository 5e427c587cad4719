"""Batched confirmed publishing (the replay's hot path) against a real broker: every message
is answered on its own, by an ack, a return or the channel closing; none is left waiting."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import cast

import aio_pika
import aiormq
import pytest
from pamqp import commands as spec

from shared.messaging.batch_publisher import BatchPublisher, OutgoingMessage, refusal
from shared.messaging.topology import PUSH_COMMANDS
from tests.support.dlq import drain
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


@pytest.fixture
async def publisher(fresh_broker: BrokerEnv) -> AsyncIterator[BatchPublisher]:
    connection = await aio_pika.connect(fresh_broker.amqp_url("ops"))
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        yield BatchPublisher(cast(aiormq.Channel, await channel.get_underlay_channel()))
    finally:
        await connection.close()


def _message(routing_key: str, number: int, *, exchange: str = "") -> OutgoingMessage:
    return OutgoingMessage(
        exchange,
        routing_key,
        spec.Basic.Properties(message_id=f"m{number}", delivery_mode=2, headers={"n": number}),
        b"x" * number,
    )


async def test_a_batch_arrives_in_order_and_every_message_is_confirmed(
    fresh_broker: BrokerEnv, publisher: BatchPublisher
) -> None:
    batch = [_message(PUSH_COMMANDS.name, n) for n in range(300)]

    first = await publisher.send(batch[:150])
    second = await publisher.send(batch[150:])
    answers = await publisher.confirmed(first + second)

    copies = await drain(fresh_broker, PUSH_COMMANDS.name, "push")
    assert answers == [True] * 300
    assert [(c.message_id, c.headers["n"], len(c.body)) for c in copies] == [
        (f"m{n}", n, n) for n in range(300)
    ]


async def test_an_unroutable_message_is_refused_alone(
    fresh_broker: BrokerEnv, publisher: BatchPublisher
) -> None:
    batch = [_message(PUSH_COMMANDS.name, 1), _message("no.such.queue", 2)]
    batch.append(_message(PUSH_COMMANDS.name, 3))

    confirmations = await publisher.send(batch)
    answers = await publisher.confirmed(confirmations)

    assert answers == [True, False, True]
    assert "NO_ROUTE" in (refusal(confirmations) or "")
    assert [c.message_id for c in await drain(fresh_broker, PUSH_COMMANDS.name, "push")] == [
        "m1",
        "m3",
    ]


async def test_a_channel_the_broker_closes_answers_every_message_at_once(
    publisher: BatchPublisher,
) -> None:
    batch = [_message("key", n, exchange="no.such.exchange") for n in range(50)]

    started = time.monotonic()
    confirmations = await publisher.send(batch)
    answers = await publisher.confirmed(confirmations, within=20)

    assert answers == [False] * 50
    assert time.monotonic() - started < 10  # not the confirm timeout
    assert refusal(confirmations) is not None
