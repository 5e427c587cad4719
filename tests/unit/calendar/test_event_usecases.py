"""Creating and changing events, specified through in-memory fakes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from calendar_service.errors import AccountGone, EndsBeforeStart, NotFound, NotYours
from calendar_service.usecases.events import change_event, create_event
from tests.fakes.calendar import FakeEventCache, FakeUnitOfWork, a_user, an_event


async def test_an_event_is_created_for_its_organizer() -> None:
    uow = FakeUnitOfWork()
    organizer = await a_user(uow, "Olga")

    event = await create_event(uow, organizer_id=organizer["id"], fields={"title": "Picnic"})

    assert event["organizer_id"] == organizer["id"]
    assert uow.committed


async def test_a_deleted_account_creates_no_event() -> None:
    uow = FakeUnitOfWork()

    with pytest.raises(AccountGone):
        await create_event(uow, organizer_id=uuid.uuid4(), fields={"title": "Picnic"})
    assert uow.events.rows == {}


async def test_the_organizer_changes_an_event_and_its_cached_read_is_dropped() -> None:
    uow, cache = FakeUnitOfWork(), FakeEventCache()
    organizer = await a_user(uow, "Olga")
    event = await an_event(uow, organizer)

    changed = await change_event(
        uow, cache, event_id=event["id"], caller_id=organizer["id"], changes={"title": "Fair"}
    )

    assert changed["title"] == "Fair"
    assert uow.committed
    assert cache.invalidated == [event["id"]]


async def test_only_the_organizer_may_change_an_event() -> None:
    uow = FakeUnitOfWork()
    event = await an_event(uow, await a_user(uow, "Olga"))
    stranger = await a_user(uow, "Sam")

    with pytest.raises(NotYours, match="only the organizer changes an event"):
        await change_event(
            uow,
            FakeEventCache(),
            event_id=event["id"],
            caller_id=stranger["id"],
            changes={"title": "Mine now"},
        )
    assert uow.events.rows[event["id"]]["title"] == "Picnic"
    assert not uow.committed


async def test_an_event_cannot_be_changed_to_end_before_it_starts() -> None:
    uow = FakeUnitOfWork()
    organizer = await a_user(uow, "Olga")
    event = await an_event(uow, organizer)

    with pytest.raises(EndsBeforeStart):
        await change_event(
            uow,
            FakeEventCache(),
            event_id=event["id"],
            caller_id=organizer["id"],
            changes={"ends_at": datetime(2030, 5, 1, tzinfo=UTC)},
        )


async def test_changing_an_unknown_event_is_not_found() -> None:
    uow = FakeUnitOfWork()

    with pytest.raises(NotFound, match="event not found"):
        await change_event(
            uow, FakeEventCache(), event_id=uuid.uuid4(), caller_id=uuid.uuid4(), changes={}
        )
