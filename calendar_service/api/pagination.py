"""Opaque keyset cursors: base64url of the last row's sort key."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson
from fastapi import HTTPException, status


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    raw = orjson.dumps([at.isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = orjson.loads(raw)
        if not isinstance(at, str) or not isinstance(row_id, str):
            raise TypeError("cursor parts must be strings")
        return datetime.fromisoformat(at).astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, OverflowError) as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="invalid cursor") from exc
