"""The in-memory inbox behaves like the PostgreSQL one (tested in integration)."""

from __future__ import annotations

import uuid

from tests.fakes.messaging import MemoryInbox


async def test_a_new_message_is_not_seen() -> None:
    assert await MemoryInbox().seen("email/q", uuid.uuid4()) is None


async def test_a_recorded_message_is_seen_with_its_follow_ups() -> None:
    inbox = MemoryInbox()
    message_id = uuid.uuid4()

    await inbox.record("email/q", message_id, [b"a", b"b"])

    assert await inbox.seen("email/q", message_id) == [b"a", b"b"]
    assert await inbox.seen("push/q", message_id) is None


async def test_the_first_record_wins() -> None:
    inbox = MemoryInbox()
    message_id = uuid.uuid4()

    await inbox.record("email/q", message_id, [b"first"])
    await inbox.record("email/q", message_id, [b"second"])

    assert await inbox.seen("email/q", message_id) == [b"first"]
