"""Dead letters as people and programs see them.

JSON-ready dicts are what ``rsvp-dlq show --json`` and the admin API return;
``letters_table`` is what ``rsvp-dlq show`` prints on a terminal.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from shared.dlq.selection import DeadLetter

#: Below this many columns seven columns of ids, times and routes cannot share
#: a row (rich would cut each to "pro…"), so each letter gets a block of its own.
WIDE_TERMINAL = 160


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


def _facts(letter: DeadLetter) -> list[tuple[str, str]]:
    """(label, value) pairs of one letter, in the order a person reads them."""
    exception = ": ".join(filter(None, (letter.exception_type, letter.exception_message)))
    return [
        ("message id", letter.message_id or "-"),
        ("type", letter.type or "-"),
        ("reason", letter.reason),
        ("exception", exception[:80] or "-"),
        ("attempts", str(letter.attempts)),
        ("failed at", letter.failed_at.isoformat(timespec="seconds") if letter.failed_at else "-"),
        ("origin", f"{letter.original_exchange or '(default)'} / {letter.original_routing_key}"),
    ]


def letters_table(queue: str, letters: Sequence[DeadLetter], *, width: int) -> RenderableType:
    """One row per letter on a wide terminal; one label/value block per letter on a narrow one.

    Values never end in an ellipsis: a long one folds onto the next line, so an
    id or a route can always be copied whole.
    """
    if width < WIDE_TERMINAL:
        blocks: list[RenderableType] = [Text(queue, style="bold")]
        for letter in letters:
            block = Table.grid(padding=(0, 2))
            block.add_column(style="bold", no_wrap=True)
            block.add_column(overflow="fold")
            for label, value in _facts(letter):
                block.add_row(label, value)
            blocks += [Text(), block]
        return Group(*blocks)
    table = Table(title=queue)
    table.add_column("message id", no_wrap=True)
    for label in ("type", "reason", "exception", "attempts", "failed at", "origin"):
        table.add_column(label, overflow="fold")
    for letter in letters:
        table.add_row(*(value for _, value in _facts(letter)))
    return table
