"""Keyset cursors: the last row's sort key as ``<microseconds since 0001-01-01 UTC>_<uuid hex>``.

Every string of the declared pattern is a position in the key order, so the
OpenAPI document can say exactly what a cursor is: a client passing back
``next_cursor`` always matches, and a string that matches is never refused (a
time past year 9999 is read as the end of time). Anything else is a 400.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, status

from calendar_service.api.errors import refusal

#: The pattern every cursor this service hands out matches, declared in the OpenAPI document.
CURSOR_PATTERN = r"^[0-9]{1,18}_[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
#: The `responses` entry of a route that reads a cursor.
INVALID_CURSOR = refusal(
    status.HTTP_400_BAD_REQUEST, "a cursor of the declared pattern is expected"
)
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime.max.replace(tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    ticks = (at.astimezone(UTC) - _EPOCH) // _MICROSECOND
    return f"{ticks}_{row_id.hex}"


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    if not _CURSOR.fullmatch(cursor):  # `$` as in JSON Schema: no final newline
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="invalid cursor")
    ticks, row_id = cursor.split("_")
    try:
        at = _EPOCH + timedelta(microseconds=int(ticks))
    except OverflowError:
        at = _LAST
    return min(at, _LAST), uuid.UUID(hex=row_id)
