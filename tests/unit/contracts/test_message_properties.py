"""Properties of the message contract over generated envelopes of every type (hypothesis).

Envelopes are built from the pydantic models themselves (``st.builds`` with
strategies for the constrained fields), so a new field or type is covered as
soon as it is in ``shared/schemas``: every one survives the codec unchanged,
and what the contract refuses is refused with ``InvalidMessage``, never
another exception that would stop a consumer.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import aio_pika
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messaging.codec import envelope_to_amqp, read_envelope, stored_body_to_amqp
from shared.schemas import (
    MESSAGE_TYPES,
    Attendee,
    DeliveryFailedPayload,
    EmailSentPayload,
    Envelope,
    EventSummary,
    InvalidMessage,
    NotificationCommand,
    PushSentPayload,
    RsvpPayload,
    SubscriptionExpiredPayload,
    parse_message,
)

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)).flatmap(
    lambda naive: offsets.map(lambda tz: naive.replace(tzinfo=tz))
)
#: What the contract's address pattern takes: no spaces, one @, a dot after it.
addresses = st.from_regex(r"[a-z0-9._+-]{1,40}@[a-z0-9-]{1,30}\.[a-z]{2,10}", fullmatch=True)
names = st.text(min_size=1, max_size=120)
kinds = st.sampled_from(["confirmation", "reminder", "announcement"])
statuses = st.sampled_from(["going", "maybe", "declined", "cancelled"])

events = st.builds(
    EventSummary,
    title=st.text(min_size=1, max_size=200),
    starts_at=instants,
    ends_at=st.none() | instants,
    location=st.none() | st.text(max_size=300),
    organizer_name=st.none() | st.text(max_size=120),
    organizer_email=st.none() | addresses,
)
attendees = st.builds(Attendee, email=addresses, name=names)
outcome_fields: dict[str, Any] = {
    "kind": kinds,
    "source_type": st.sampled_from(sorted(MESSAGE_TYPES)),
    "rsvp_version": st.none() | st.integers(min_value=1, max_value=10**6),
}

PAYLOADS: dict[type[Any], st.SearchStrategy[Any]] = {
    RsvpPayload: st.builds(
        RsvpPayload,
        event=events,
        attendee=attendees,
        status=statuses,
        previous_status=st.none() | statuses,
        guests=st.integers(min_value=0, max_value=100),
        version=st.integers(min_value=1, max_value=10**9),
    ),
    NotificationCommand: st.builds(
        NotificationCommand,
        kind=kinds,
        recipient=attendees,
        event=events,
        status=st.none() | statuses,
        subject=st.none() | st.text(max_size=200),
        body=st.none() | st.text(max_size=5000),
        remind_before_seconds=st.none() | st.integers(min_value=0, max_value=10**7),
    ),
    EmailSentPayload: st.builds(
        EmailSentPayload, recipient=addresses, smtp_message_id=st.text(), **outcome_fields
    ),
    DeliveryFailedPayload: st.builds(
        DeliveryFailedPayload,
        reason=st.text(max_size=200),
        error=st.text(max_size=2000),
        **outcome_fields,
    ),
    PushSentPayload: st.builds(
        PushSentPayload,
        status=st.sampled_from(["sent", "skipped"]),
        delivered=st.integers(min_value=0, max_value=1000),
        **outcome_fields,
    ),
    SubscriptionExpiredPayload: st.builds(
        SubscriptionExpiredPayload,
        endpoint=st.text(max_size=2048),
        status_code=st.sampled_from([404, 410]),
        seen_at=instants,
    ),
}


def payload_model(cls: type[Envelope[Any]]) -> type[Any]:
    model: type[Any] = cls.model_fields["data"].annotation  # type: ignore[assignment]
    return model


def envelopes_of(cls: type[Envelope[Any]]) -> st.SearchStrategy[Envelope[Any]]:
    return st.builds(
        cls,
        occurred_at=instants,
        causation_id=st.none() | st.uuids(),
        producer=st.text(min_size=1, max_size=100),
        data=PAYLOADS[payload_model(cls)],
    )


any_envelope = st.sampled_from(sorted(MESSAGE_TYPES)).flatmap(
    lambda name: envelopes_of(MESSAGE_TYPES[name])
)


def test_every_message_type_has_a_generator() -> None:
    assert {payload_model(cls) for cls in MESSAGE_TYPES.values()} <= set(PAYLOADS)


@PROPERTY_SETTINGS
@given(any_envelope)
def test_every_envelope_comes_back_from_the_wire_as_it_went(envelope: Envelope[Any]) -> None:
    message = envelope_to_amqp(envelope)

    assert read_envelope(message) == envelope
    assert type(read_envelope(message)) is type(envelope)
    assert message.message_id == str(envelope.message_id)
    assert message.correlation_id == str(envelope.correlation_id)
    assert message.type == envelope.type
    assert message.app_id == envelope.producer
    assert envelope.occurred_at.utcoffset() == timedelta(0)


@PROPERTY_SETTINGS
@given(any_envelope)
def test_a_stored_body_is_republished_byte_for_byte(envelope: Envelope[Any]) -> None:
    body = envelope.model_dump_json().encode()

    message = stored_body_to_amqp(body)

    assert message.body == body
    assert message.message_id == str(envelope.message_id)
    assert message.type == envelope.type


@PROPERTY_SETTINGS
@given(any_envelope, st.text(min_size=1, max_size=20), st.integers(min_value=-5, max_value=5))
def test_unknown_fields_are_ignored_by_older_consumers(
    envelope: Envelope[Any], name: str, value: int
) -> None:
    fields = json.loads(envelope.model_dump_json())
    fields.setdefault(f"x-{name}", value)
    fields["data"].setdefault(f"x-{name}", value)

    assert parse_message(json.dumps(fields)) == envelope


def _refused(fields: dict[str, Any]) -> str:
    with pytest.raises(InvalidMessage) as refused:
        parse_message(json.dumps(fields))
    return str(refused.value)


@PROPERTY_SETTINGS
@given(any_envelope, st.text(max_size=40).filter(lambda t: t not in MESSAGE_TYPES))
def test_an_unknown_type_is_refused(envelope: Envelope[Any], unknown: str) -> None:
    fields = json.loads(envelope.model_dump_json())
    fields["type"] = unknown

    assert _refused(fields)


@PROPERTY_SETTINGS
@given(any_envelope, st.integers(min_value=2, max_value=2**31))
def test_a_future_schema_version_is_refused(envelope: Envelope[Any], version: int) -> None:
    fields = json.loads(envelope.model_dump_json())
    fields["schema_version"] = version

    assert "newer than this consumer" in _refused(fields)


@PROPERTY_SETTINGS
@given(
    any_envelope,
    st.sampled_from(["message_id", "type", "occurred_at", "correlation_id", "producer", "data"]),
)
def test_an_envelope_without_a_required_field_is_refused(
    envelope: Envelope[Any], missing: str
) -> None:
    fields = json.loads(envelope.model_dump_json())
    del fields[missing]

    assert _refused(fields)


@PROPERTY_SETTINGS
@given(any_envelope, st.datetimes(max_value=datetime(9999, 1, 1)))
def test_a_time_without_an_offset_is_refused(envelope: Envelope[Any], naive: datetime) -> None:
    fields = json.loads(envelope.model_dump_json())
    fields["occurred_at"] = naive.isoformat()

    assert "occurred_at" in _refused(fields)


@PROPERTY_SETTINGS
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_an_envelope_or_invalid_never_another_error(body: bytes) -> None:
    try:
        parsed = parse_message(body)
    except InvalidMessage:
        return
    assert isinstance(parsed, Envelope)


@PROPERTY_SETTINGS
@given(any_envelope, st.sampled_from(["text/plain", "application/xml", "application/octet-stream"]))
def test_a_body_declared_as_something_else_than_json_is_refused(
    envelope: Envelope[Any], content_type: str
) -> None:
    message = aio_pika.Message(envelope.model_dump_json().encode(), content_type=content_type)

    with pytest.raises(InvalidMessage, match="content type"):
        read_envelope(message)
