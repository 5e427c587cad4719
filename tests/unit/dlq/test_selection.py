"""Reading a dead letter's facts and picking dead letters: pure functions, no broker."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.dlq.selection import REPLAY_COUNT, read_dead_letter, replay_headers
from shared.messaging import faults

FAILED_AT = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def runtime_dead_letter(**extra: object) -> dict[str, object]:
    return {
        **faults.fault_headers(
            {"traceparent": "00-abc-def-01"},
            reason="invalid_recipient",
            error=ValueError("550 no such user"),
            attempts=3,
            route=faults.SourceRoute("rsvp.events", ""),
            queue="email.rsvp_events",
            failed_at=FAILED_AT,
        ),
        **extra,
    }


def test_facts_come_from_our_fault_headers() -> None:
    letter = read_dead_letter(
        runtime_dead_letter(),
        message_id="m1",
        message_type="rsvp.created",
        dead_letter_queue="email.rsvp_events.dlq",
    )

    assert (letter.reason, letter.exception_type) == ("invalid_recipient", "ValueError")
    assert letter.exception_message == "550 no such user"
    assert (letter.attempts, letter.failed_at) == (3, FAILED_AT)
    assert (letter.original_exchange, letter.original_routing_key) == ("rsvp.events", "")
    assert letter.original_queue == "email.rsvp_events"


def test_broker_dead_letters_are_read_from_x_death() -> None:
    death = {
        "count": 6,
        "reason": "delivery_limit",
        "queue": "email.commands",
        "time": FAILED_AT.replace(tzinfo=None),
        "exchange": "notify.direct",
        "routing-keys": [b"email.commands"],
    }

    letter = read_dead_letter(
        {"x-death": [death]},
        message_id="m2",
        message_type="email.send",
        dead_letter_queue="email.commands.dlq",
    )

    assert (letter.reason, letter.exception_type, letter.attempts) == ("delivery_limit", None, 6)
    assert letter.failed_at == FAILED_AT
    assert (letter.original_exchange, letter.original_routing_key) == (
        "notify.direct",
        "email.commands",
    )
    assert letter.original_queue == "email.commands"


def test_a_bare_message_falls_back_to_the_queue_it_sits_in() -> None:
    letter = read_dead_letter(
        {}, message_id=None, message_type=None, dead_letter_queue="push.commands.dlq"
    )

    assert (letter.reason, letter.original_queue, letter.failed_at) == (
        "unknown",
        "push.commands",
        None,
    )


def test_replay_headers_reset_attempts_drop_failure_facts_and_count_replays() -> None:
    letter = read_dead_letter(
        runtime_dead_letter(**{REPLAY_COUNT: 2, "x-delivery-count": 4}),
        message_id="m",
        message_type="t",
        dead_letter_queue="email.rsvp_events.dlq",
    )
    now = datetime(2030, 5, 2, tzinfo=UTC)

    headers = replay_headers(letter, now=now)

    assert headers["x-attempts"] == 0
    assert headers[REPLAY_COUNT] == 3
    assert headers["x-replayed-at"] == now.isoformat()
    assert headers["traceparent"] == "00-abc-def-01"
    assert headers[faults.ORIGINAL_EXCHANGE] == "rsvp.events"
    for gone in (faults.FAULT_REASON, faults.EXCEPTION_TYPE, faults.FAILED_AT, "x-delivery-count"):
        assert gone not in headers
