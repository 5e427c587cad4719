"""Headers that say where a message came from and why it failed (design §6.5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from shared.messaging.errors import PermanentError, TransientError
from shared.messaging.faults import (
    MAX_EXCEPTION_MESSAGE,
    SourceRoute,
    describe,
    fault_headers,
    original_route,
    retry_headers,
)

DELIVERED = SourceRoute("", "email.rsvp_events")  # how a message comes back from a delay queue
FIRST = SourceRoute("rsvp.events", "")


def test_dead_letter_headers_say_why_where_from_and_when() -> None:
    failed_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))

    headers = fault_headers(
        {"traceparent": "00-abc-def-01", "x-death": [{"count": 1}]},
        reason="smtp_rejected",
        error=PermanentError("550 no such user"),
        attempts=3,
        route=FIRST,
        queue="email.rsvp_events",
        failed_at=failed_at,
    )

    assert headers == {
        "traceparent": "00-abc-def-01",
        "x-death": [{"count": 1}],
        "x-fault-reason": "smtp_rejected",
        "x-exception-type": "PermanentError",
        "x-exception-message": "550 no such user",
        "x-failed-at": "2030-01-02T01:04:05+00:00",
        "x-attempts": 3,
        "x-original-exchange": "rsvp.events",
        "x-original-routing-key": "",
        "x-original-queue": "email.rsvp_events",
    }


def test_dead_letter_time_defaults_to_now_in_utc() -> None:
    headers = fault_headers(
        {}, reason="r", error=ValueError("x"), attempts=1, route=FIRST, queue="q"
    )

    failed_at = datetime.fromisoformat(str(headers["x-failed-at"]))
    assert failed_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - failed_at) < timedelta(seconds=5)


def test_long_exception_messages_are_truncated() -> None:
    headers = fault_headers(
        {}, reason="r", error=ValueError("x" * 5000), attempts=1, route=FIRST, queue="q"
    )

    assert len(str(headers["x-exception-message"])) == MAX_EXCEPTION_MESSAGE


def test_retry_headers_count_the_attempt_and_name_the_last_error() -> None:
    headers = retry_headers(
        {"x-attempts": 1, "traceparent": "t"},
        attempts=2,
        route=FIRST,
        error=TransientError("421 busy"),
    )

    assert headers == {
        "x-attempts": 2,
        "traceparent": "t",
        "x-original-exchange": "rsvp.events",
        "x-original-routing-key": "",
        "x-last-error": "TransientError: 421 busy",
    }


def test_original_route_is_the_first_one_once_recorded() -> None:
    recorded = {"x-original-exchange": "rsvp.events", "x-original-routing-key": ""}

    assert original_route(recorded, DELIVERED) == FIRST


def test_original_route_is_the_delivery_route_the_first_time() -> None:
    assert original_route({}, FIRST) == FIRST


def test_an_error_without_a_message_is_described_by_its_type() -> None:
    assert describe(TimeoutError()) == "TimeoutError"
