"""Schemathesis hooks for the conformance run: the two rules no JSON Schema can state.

Loaded by ``st run`` through ``SCHEMATHESIS_HOOKS``. Each edits a generated
request just before it is sent, the way a real client would shape it, and
leaves a request that was generated invalid still invalid:

* an event ends at or after it starts, also after a change: a valid request
  whose end is before its start is swapped, and a change of only one of the
  two (the other is stored) ends at the latest time there is;
* an Idempotency-Key names one request: each generated request gets a key of
  its own, because reusing one with another body is rightly a 422.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import schemathesis

#: An end no start can be after (PostgreSQL and Python both hold it).
LATEST_END = "9999-12-31T23:59:59Z"


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _end_after_start(body: dict[str, Any], *, is_change: bool) -> None:
    starts, ends = _instant(body.get("starts_at")), _instant(body.get("ends_at"))
    if starts is not None and ends is not None:
        if ends < starts:
            body["starts_at"], body["ends_at"] = body["ends_at"], body["starts_at"]
    elif is_change and ("ends_at" not in body if starts else "starts_at" not in body and ends):
        # one of the two changes and the other is stored: end after any start
        body["ends_at"] = LATEST_END


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path in ("/events", "/events/{event_id}") and isinstance(case.body, dict):
        _end_after_start(case.body, is_change=case.method.upper() == "PATCH")
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key" and isinstance(headers[name], str):
            headers[name] = str(uuid.uuid4())
