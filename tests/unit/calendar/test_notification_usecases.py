"""Resent confirmations and announcements, specified through in-memory fakes."""

from __future__ import annotations

import uuid

import pytest

from calendar_service.domain import Answer, Caller
from calendar_service.errors import NotYours, RateLimited
from calendar_service.usecases.announcements import announcement_progress, post_announcement
from calendar_service.usecases.confirmations import resend_confirmation
from calendar_service.usecases.rsvps import stage_answer
from tests.fakes.calendar import FakeQuota, FakeUnitOfWork, a_user, an_event


async def _answered(uow: FakeUnitOfWork) -> tuple[dict[str, object], uuid.UUID]:
    """A guest's RSVP to someone's event; returns the guest and the RSVP id."""
    event = await an_event(uow, await a_user(uow, "Olga"))
    guest = await a_user(uow)
    answered = await stage_answer(uow, event_id=event["id"], user=guest, answer=Answer("going", 0))
    uow.outbox.messages.clear()
    return guest, answered.rsvp["id"]


async def test_resend_queues_an_email_send_and_sets_the_email_back_to_pending() -> None:
    uow = FakeUnitOfWork()
    guest, rsvp_id = await _answered(uow)
    uow.notifications.status[rsvp_id, "email"] = "sent"

    command = await resend_confirmation(uow, FakeQuota(), rsvp_id=rsvp_id, caller_id=guest["id"])

    assert uow.outbox.messages == [command]
    assert command.type == "email.send"
    assert uow.notifications.status[rsvp_id, "email"] == "pending"
    assert uow.committed


async def test_resend_refused_for_someone_elses_rsvp() -> None:
    uow, quota = FakeUnitOfWork(), FakeQuota()
    _, rsvp_id = await _answered(uow)
    stranger = await a_user(uow, "Sam")

    with pytest.raises(NotYours, match="not your RSVP"):
        await resend_confirmation(uow, quota, rsvp_id=rsvp_id, caller_id=stranger["id"])
    assert quota.taken == []  # a stranger uses up none of the owner's resends
    assert uow.outbox.messages == []


async def test_resend_past_the_quota_is_rate_limited_and_queues_nothing() -> None:
    uow = FakeUnitOfWork()
    guest, rsvp_id = await _answered(uow)
    quota = FakeQuota(allowed=1, retry_after_s=42)
    await resend_confirmation(uow, quota, rsvp_id=rsvp_id, caller_id=guest["id"])
    uow.outbox.messages.clear()

    with pytest.raises(RateLimited) as refused:
        await resend_confirmation(uow, quota, rsvp_id=rsvp_id, caller_id=guest["id"])
    assert refused.value.retry_after_s == 42
    assert uow.outbox.messages == []


async def _announce(uow: FakeUnitOfWork, event_id: uuid.UUID, caller_id: uuid.UUID) -> object:
    return await post_announcement(
        uow,
        FakeQuota(),
        event_id=event_id,
        caller_id=caller_id,
        subject="Moved",
        body="We meet at noon.",
        channels=["email"],
        correlation_id=uuid.uuid4(),
    )


async def test_only_the_organizer_announces_and_sees_the_progress() -> None:
    uow = FakeUnitOfWork()
    organizer, stranger = await a_user(uow, "Olga"), await a_user(uow, "Sam")
    event = await an_event(uow, organizer)

    with pytest.raises(NotYours, match="only the organizer announces"):
        await _announce(uow, event["id"], stranger["id"])
    posted = await _announce(uow, event["id"], organizer["id"])

    assert uow.committed
    with pytest.raises(NotYours, match="only the organizer sees this"):
        await announcement_progress(
            uow,
            event_id=event["id"],
            announcement_id=posted["id"],
            caller=Caller(stranger["id"], "user"),
        )
