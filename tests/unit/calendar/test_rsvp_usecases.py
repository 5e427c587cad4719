"""Answering and withdrawing RSVPs, specified through in-memory fakes.

That the seats hold and the counters move is PostgreSQL's part, proven in
tests/integration/api/.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from calendar_service.domain import Answer, Caller
from calendar_service.errors import (
    AccountGone,
    IdempotencyKeyReused,
    NotFound,
    NothingToCancel,
    NotYours,
)
from calendar_service.usecases.rsvps import (
    Answered,
    IdempotencyKey,
    Reply,
    answer_rsvp,
    cancel_rsvp,
    rsvp_with_notifications,
    rsvps_of_event,
)
from tests.fakes.calendar import FakeEventCache, FakeUnitOfWork, a_user, an_event
from tests.unit.calendar.answer_desk import UnitOfWorkAnswerDesk

GOING = Answer("going", 0)


def _render(answered: Answered) -> tuple[int, bytes]:
    return 201 if answered.created else 200, f"{answered.rsvp['status']}".encode()


async def _answer(
    uow: FakeUnitOfWork,
    event: Any,
    user: Any,
    answer: Answer = GOING,
    *,
    cache: FakeEventCache | None = None,
    key: IdempotencyKey | None = None,
) -> Reply:
    return await answer_rsvp(
        UnitOfWorkAnswerDesk(uow, _render),
        cache or FakeEventCache(),
        event_id=event["id"],
        caller_id=user["id"],
        answer=answer,
        idempotency=key,
    )


async def test_a_first_answer_is_created_published_and_committed() -> None:
    uow, cache = FakeUnitOfWork(), FakeEventCache()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)

    reply = await _answer(uow, event, guest, cache=cache)

    assert reply == Reply(201, b"going")
    assert uow.outbox.types == ["rsvp.created"]
    assert uow.committed
    assert cache.invalidated == [event["id"]]


async def test_a_changed_answer_publishes_rsvp_updated() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    await _answer(uow, event, guest)

    reply = await _answer(uow, event, guest, Answer("maybe", 0))

    assert reply == Reply(200, b"maybe")
    assert uow.outbox.types == ["rsvp.created", "rsvp.updated"]


async def test_answering_twice_with_the_same_answer_changes_nothing() -> None:
    uow, cache = FakeUnitOfWork(), FakeEventCache()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    await _answer(uow, event, guest)
    cache.invalidated.clear()

    reply = await _answer(uow, event, guest, cache=cache)

    assert reply.status_code == 200
    assert uow.outbox.types == ["rsvp.created"]
    assert cache.invalidated == []


async def test_answering_an_unknown_event_is_not_found() -> None:
    uow = FakeUnitOfWork()
    guest = await a_user(uow)

    with pytest.raises(NotFound, match="event not found"):
        await _answer(uow, {"id": uuid.uuid4()}, guest)
    assert not uow.committed


async def test_an_answer_from_a_deleted_account_is_refused() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))

    with pytest.raises(AccountGone):
        await _answer(uow, event, {"id": uuid.uuid4()})


async def test_a_repeated_idempotency_key_replays_the_first_reply_and_writes_nothing() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    key = IdempotencyKey("k1", "fingerprint-a")
    first = await _answer(uow, event, guest, key=key)

    again = await _answer(uow, event, guest, key=key)

    assert again == Reply(first.status_code, first.body, replayed=True)
    assert uow.outbox.types == ["rsvp.created"]


async def test_an_idempotency_key_reused_for_another_request_is_refused() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    await _answer(uow, event, guest, key=IdempotencyKey("k1", "fingerprint-a"))

    with pytest.raises(IdempotencyKeyReused):
        await _answer(uow, event, guest, Answer("maybe", 0), key=IdempotencyKey("k1", "other"))


async def test_cancel_publishes_rsvp_cancelled() -> None:
    uow, cache = FakeUnitOfWork(), FakeEventCache()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    await _answer(uow, event, guest)

    cancelled = await cancel_rsvp(
        uow,
        cache,
        event_id=event["id"],
        caller_id=guest["id"],
    )

    assert cancelled.rsvp["status"] == "cancelled"
    assert cancelled.notifications == {"email": "pending", "push": "pending"}
    assert uow.outbox.types == ["rsvp.created", "rsvp.cancelled"]
    assert cache.invalidated == [event["id"]]


async def test_cancelling_without_an_answer_has_nothing_to_cancel() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)

    with pytest.raises(NothingToCancel):
        await cancel_rsvp(
            uow,
            FakeEventCache(),
            event_id=event["id"],
            caller_id=guest["id"],
        )
    assert uow.outbox.messages == []


async def test_an_rsvp_is_shown_to_the_organizer_but_not_to_a_stranger() -> None:
    uow = FakeUnitOfWork()
    organizer = await a_user(uow, "Olga")
    event = await an_event(uow, organizer)
    guest, stranger = await a_user(uow), await a_user(uow, "Sam")
    await _answer(uow, event, guest)
    (rsvp_id,) = uow.rsvps.rows

    shown = await rsvp_with_notifications(
        uow,
        rsvp_id=rsvp_id,
        caller=Caller(organizer["id"], "user"),
    )
    assert shown.notifications == {"email": "pending", "push": "pending"}
    with pytest.raises(NotYours, match="not your RSVP"):
        await rsvp_with_notifications(
            uow,
            rsvp_id=rsvp_id,
            caller=Caller(stranger["id"], "user"),
        )


async def test_only_the_organizer_or_an_admin_lists_an_events_rsvps() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    await _answer(uow, event, guest)

    async def listed_for(caller: Caller) -> int:
        rows = await rsvps_of_event(
            uow,
            event_id=event["id"],
            caller=caller,
            status=None,
            limit=10,
            after=None,
        )
        return len(rows)

    assert await listed_for(Caller(uuid.uuid4(), "admin")) == 1
    with pytest.raises(NotYours, match="only the organizer sees RSVPs"):
        await listed_for(Caller(guest["id"], "user"))
