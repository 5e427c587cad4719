"""Dead letters as JSON-ready dicts: what ``rsvp-dlq show --json`` and the admin API return."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

from shared.dlq.selection import DeadLetter


def jsonable(value: Any) -> Any:
    """AMQP header values (datetimes, bytes, nested tables) as plain JSON values."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [jsonable(v) for v in value]
    return value


def body_as_json(body: bytes) -> Any:
    """The body as JSON when it is JSON (every envelope is), else as base64 text."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"base64": base64.b64encode(body).decode()}


def letter_as_dict(letter: DeadLetter, *, with_content: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {
        "message_id": letter.message_id,
        "type": letter.type,
        "reason": letter.reason,
        "exception_type": letter.exception_type,
        "exception_message": letter.exception_message,
        "attempts": letter.attempts,
        "failed_at": letter.failed_at.isoformat() if letter.failed_at else None,
        "original_exchange": letter.original_exchange,
        "original_routing_key": letter.original_routing_key,
        "original_queue": letter.original_queue,
        "replay_count": letter.replay_count,
    }
    if with_content:
        item["headers"] = jsonable(letter.headers)
        item["body"] = body_as_json(letter.body)
    return item
