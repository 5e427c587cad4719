"""Envelopes to AMQP messages and back again, so properties always mirror the body.

Design §5: the AMQP properties repeat the envelope (``message_id``, ``type``,
``correlation_id``, ``timestamp``, ``app_id``), the body is the envelope's
JSON, and the headers carry W3C ``traceparent`` and the runtime's attempt
count ``x-attempts``. Republishing (retry, dead-letter, replay) copies an
incoming message's body and properties unchanged apart from its headers.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any
from uuid import UUID

import aio_pika
from aio_pika.abc import AbstractMessage, HeadersType
from pamqp.common import FieldValue

from shared.schemas import Envelope, InvalidMessage, parse_message

ATTEMPTS_HEADER = "x-attempts"
TRACEPARENT_HEADER = "traceparent"
CONTENT_TYPE = "application/json"


def read_envelope(message: AbstractMessage) -> Envelope[Any]:
    """The typed envelope of a delivery, or InvalidMessage saying why there is none.

    A content type other than JSON is refused before the body is read: a
    producer that says its body is something else is not speaking the
    contract, even when the bytes happen to parse. No content type at all is
    read as JSON (tools that publish by hand often leave it out).
    """
    declared = (message.content_type or CONTENT_TYPE).split(";", 1)[0].strip().lower()
    if declared != CONTENT_TYPE:
        raise InvalidMessage(f"content type {message.content_type!r} is not {CONTENT_TYPE}")
    return parse_message(message.body)


# Stored follow-up bodies are read back as loosely as possible: they were
# valid when written, and only their identity is needed to rebuild properties.
_StoredEnvelope = Envelope[Any]


def traceparent_for(correlation_id: UUID) -> str:
    """A W3C trace context whose trace id is the correlation id of the chain.

    Every message of one chain then shows up as one trace in any tracing
    backend, without the services having to carry a tracer between them.
    """
    return f"00-{correlation_id.hex}-{secrets.token_hex(8)}-01"


def envelope_to_amqp(
    envelope: Envelope[Any], *, headers: HeadersType | None = None
) -> aio_pika.Message:
    """The persistent AMQP message for ``envelope``; ``x-attempts`` starts at 0."""
    return _message(envelope, envelope.model_dump_json().encode(), headers)


def encoded_envelope_to_amqp(envelope: Envelope[Any], body: bytes) -> aio_pika.Message:
    """The message for ``envelope`` whose JSON ``body`` is made already (a fresh follow-up,
    recorded with exactly these bytes): no second serialisation, no parse."""
    return _message(envelope, body, None)


def stored_body_to_amqp(body: bytes, *, headers: HeadersType | None = None) -> aio_pika.Message:
    """Rebuild the message of a body published earlier, keeping the body byte for byte."""
    return _message(_StoredEnvelope.model_validate_json(body), body, headers)


def _message(envelope: Envelope[Any], body: bytes, headers: HeadersType | None) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        headers={
            TRACEPARENT_HEADER: traceparent_for(envelope.correlation_id),
            ATTEMPTS_HEADER: 0,
            **(headers or {}),
        },
        content_type=CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=str(envelope.message_id),
        correlation_id=str(envelope.correlation_id),
        timestamp=envelope.occurred_at,
        type=envelope.type,
        app_id=envelope.producer,
    )


def republished(original: AbstractMessage, headers: HeadersType) -> aio_pika.Message:
    """A copy of ``original`` with new ``headers``, ready to publish again.

    ``expiration`` is dropped so a retried message cannot expire in its delay
    queue, and ``user_id`` because the broker refuses a user id that is not the
    publishing account's own.
    """
    return aio_pika.Message(
        original.body,
        headers=headers,
        content_type=original.content_type,
        content_encoding=original.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=original.priority,
        correlation_id=original.correlation_id,
        reply_to=original.reply_to,
        message_id=original.message_id,
        timestamp=original.timestamp,
        type=original.type,
        app_id=original.app_id,
    )


def attempts_of(headers: Mapping[str, FieldValue]) -> int:
    """How many times the runtime has already failed this message (``x-attempts``)."""
    value = headers.get(ATTEMPTS_HEADER)
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str | bytes) and value.strip().isdigit():
        return int(value)
    return 0


def log_context(message: AbstractMessage, envelope: Envelope[Any] | None = None) -> dict[str, Any]:
    """The ``extra`` of every log line about a message, from its envelope if it parsed."""
    if envelope is not None:
        return {
            "correlation_id": str(envelope.correlation_id),
            "message_id": str(envelope.message_id),
            "message_type": envelope.type,
        }
    return {
        "correlation_id": message.correlation_id,
        "message_id": message.message_id,
        "message_type": message.type,
    }
