"""``rsvp-dlq show`` on a terminal: every fact of a letter readable, at 80 columns too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from rich.console import Console

from shared.dlq.selection import DeadLetter
from shared.dlq.views import letters_table

LETTER = DeadLetter(
    message_id="5f0c7b9e-3d1a-4c8e-9a57-2b6f0e1d4c33",
    type="push.subscription_expired",
    reason="invalid_recipient",
    exception_type="PermanentError",
    exception_message="550 5.1.1 <ada@example.com>: recipient address rejected",
    attempts=4,
    failed_at=datetime(2030, 5, 1, 18, 0, tzinfo=UTC),
    original_exchange="rsvp.events",
    original_routing_key="",
    original_queue="email.rsvp_events",
)


def printed(width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(letters_table("email.rsvp_events.dlq", [LETTER, LETTER], width=console.width))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 120, 200])
def test_every_fact_is_shown_whole_and_nothing_is_cut(width: int) -> None:
    text = printed(width)

    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    for fact in (LETTER.message_id, LETTER.type, LETTER.reason, "2030-05-01T18:00:00+00:00"):
        assert text.count(fact or "-") == 2, fact


def test_a_narrow_terminal_gets_one_labelled_block_per_letter() -> None:
    lines = printed(80).splitlines()

    assert lines[0].strip() == "email.rsvp_events.dlq"
    labels = [line.split("  ")[0] for line in lines if line and not line.startswith(" ")]
    block = ["message id", "type", "reason", "exception", "attempts", "failed at", "origin"]
    assert labels == ["email.rsvp_events.dlq", *block, *block]


def test_a_wide_terminal_gets_one_row_per_letter() -> None:
    rows = [line for line in printed(200).splitlines() if LETTER.message_id in line]

    assert len(rows) == 2
    assert all("push.subscription_expired" in row and "invalid_recipient" in row for row in rows)
