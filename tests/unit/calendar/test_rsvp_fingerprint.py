"""The Idempotency-Key fingerprint is the one stored keys were made with."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from calendar_service.api.rsvps import RsvpIn, fingerprint


@pytest.mark.parametrize("status", ["going", "maybe", "declined"])
@pytest.mark.parametrize("guests", [0, 3, 20])
def test_the_fingerprint_hashes_the_event_and_the_body_as_pydantic_writes_it(
    status: str, guests: int
) -> None:
    event_id = uuid.uuid4()
    body = RsvpIn.model_validate({"status": status, "guests": guests})

    expected = hashlib.sha256(f"{event_id}:{body.model_dump_json()}".encode()).hexdigest()

    assert fingerprint(event_id, body) == expected
