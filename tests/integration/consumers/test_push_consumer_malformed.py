"""A malformed delivery to the push consumer is dead-lettered with the reason, and pushing goes on.

The same cases as the email consumer's (``tests.support.messages.MALFORMED``):
not JSON, schema-invalid, no message id, an unknown type, a future schema
version, ten megabytes, a content type other than JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devtools.pushsink import PushSink
from shared.messaging.topology import EVENTS_EXCHANGE, PUSH_RSVP_EVENTS
from tests.integration.consumers.test_push_consumer import (
    followups,
    rsvp_of,
    user_with_subscriptions,
)
from tests.support.amqp import channel_as, get_one, publish, publish_as_calendar
from tests.support.messages import MALFORMED, MALFORMED_IDS, assert_dead_lettered_as_invalid
from tests.support.push_consumer import push_settings, running_push_consumer
from tests.support.push_service import running_push_service
from tests.support.services import BrokerEnv

pytestmark = pytest.mark.integration


@pytest.fixture
async def push_service() -> AsyncIterator[PushSink]:
    async with running_push_service() as sink:
        yield sink


@pytest.mark.parametrize(("body", "complaint", "content_type"), MALFORMED, ids=MALFORMED_IDS)
async def test_an_invalid_body_is_dead_lettered_with_the_reason_and_pushing_goes_on(
    client: httpx.AsyncClient,
    push_service: PushSink,
    fresh_broker: BrokerEnv,
    database_url: str,
    body: bytes,
    complaint: str,
    content_type: str | None,
) -> None:
    user, [subscription] = await user_with_subscriptions(client, push_service, 1)
    good = rsvp_of(user)

    async with running_push_consumer(push_settings(fresh_broker, database_url)) as runtime:
        async with channel_as(fresh_broker.amqp_url("calendar")) as calendar:
            bad_id = await publish(
                calendar, EVENTS_EXCHANGE, "", body, type="rsvp.created", content_type=content_type
            )
        await publish_as_calendar(fresh_broker, good)
        [push] = await push_service.wait_for(1)
        [sent] = await followups(fresh_broker, 1)
        async with channel_as(fresh_broker.amqp_url("ops")) as ops:
            dead = await get_one(ops, PUSH_RSVP_EVENTS.dead_letter_queue, timeout=15)
        still_ready = runtime.ready

    assert push.subscription_id == subscription.id
    assert_dead_lettered_as_invalid(
        dead, message_id=bad_id, body=body, complaint=complaint, queue=PUSH_RSVP_EVENTS.name
    )
    # an unreadable message names no RSVP: the only follow-up is the good one's push.sent
    assert (sent.type, sent.causation_id) == ("push.sent", good.message_id)
    assert still_ready
