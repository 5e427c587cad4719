"""AMQP properties and headers mirror the envelope (design §5)."""

from __future__ import annotations

import re

import aio_pika

from shared.messaging.codec import (
    attempts_of,
    envelope_to_amqp,
    republished,
    stored_body_to_amqp,
    traceparent_for,
)
from tests.support.runtime import rsvp_created

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-01$")


def test_properties_mirror_the_envelope() -> None:
    envelope = rsvp_created()

    message = envelope_to_amqp(envelope)

    assert message.body == envelope.model_dump_json().encode()
    assert message.message_id == str(envelope.message_id)
    assert message.type == "rsvp.created"
    assert message.correlation_id == str(envelope.correlation_id)
    assert message.timestamp == envelope.occurred_at
    assert message.app_id == envelope.producer
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


def test_first_publish_has_zero_attempts_and_a_trace_of_the_correlation() -> None:
    envelope = rsvp_created()

    headers = envelope_to_amqp(envelope, headers={"x-custom": "kept"}).headers

    assert headers["x-attempts"] == 0
    assert headers["x-custom"] == "kept"
    assert TRACEPARENT.match(str(headers["traceparent"]))
    assert str(headers["traceparent"]).split("-")[1] == envelope.correlation_id.hex


def test_each_traceparent_gets_a_span_of_its_own() -> None:
    correlation_id = rsvp_created().correlation_id

    assert traceparent_for(correlation_id) != traceparent_for(correlation_id)


def test_a_stored_body_is_republished_byte_for_byte() -> None:
    envelope = rsvp_created()
    body = b"  " + envelope.model_dump_json(indent=2).encode()

    message = stored_body_to_amqp(body)

    assert message.body == body
    assert message.message_id == str(envelope.message_id)
    assert message.type == envelope.type


def test_republished_copy_keeps_body_and_properties_but_not_user_or_expiry() -> None:
    original = aio_pika.Message(
        b"{}",
        message_id="m-1",
        type="rsvp.created",
        correlation_id="c-1",
        app_id="calendar_service",
        content_type="application/json",
        user_id="calendar",
        expiration=60,
        headers={"x-attempts": 0},
    )

    copy = republished(original, {"x-attempts": 1})

    assert (copy.body, copy.message_id, copy.type, copy.correlation_id, copy.app_id) == (
        b"{}",
        "m-1",
        "rsvp.created",
        "c-1",
        "calendar_service",
    )
    assert copy.headers == {"x-attempts": 1}
    assert copy.user_id is None
    assert copy.expiration is None
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT


def test_attempts_are_read_leniently() -> None:
    assert attempts_of({}) == 0
    assert attempts_of({"x-attempts": 3}) == 3
    assert attempts_of({"x-attempts": "2"}) == 2
    assert attempts_of({"x-attempts": -1}) == 0
    assert attempts_of({"x-attempts": "many"}) == 0
