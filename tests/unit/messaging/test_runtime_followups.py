"""Follow-up message ids are derived from their source, so republishes are recognisable."""

from __future__ import annotations

import uuid

from shared.messaging.followups import followup_message_id, with_followup_ids
from tests.support.runtime import email_sent_for, rsvp_created

SOURCE = uuid.UUID("11111111-2222-3333-4444-555555555555")


def test_the_same_follow_up_of_the_same_source_always_gets_the_same_id() -> None:
    first = followup_message_id("email/email.rsvp_events", SOURCE, "email.sent", 0)
    again = followup_message_id("email/email.rsvp_events", SOURCE, "email.sent", 0)

    assert first == again
    assert first.version == 5


def test_every_part_of_the_identity_changes_the_id() -> None:
    base = ("email/email.rsvp_events", SOURCE, "email.sent", 0)
    variants = [
        ("push/push.rsvp_events", SOURCE, "email.sent", 0),
        ("email/email.rsvp_events", uuid.uuid4(), "email.sent", 0),
        ("email/email.rsvp_events", SOURCE, "email.failed", 0),
        ("email/email.rsvp_events", SOURCE, "email.sent", 1),
    ]

    ids = {followup_message_id(*base)} | {followup_message_id(*v) for v in variants}

    assert len(ids) == 1 + len(variants)


def test_returned_follow_ups_are_rebuilt_with_their_deterministic_ids() -> None:
    source = rsvp_created()
    followups = [email_sent_for(source), email_sent_for(source)]

    stamped = with_followup_ids("email/q", source.message_id, followups)

    assert [f.message_id for f in stamped] == [
        followup_message_id("email/q", source.message_id, "email.sent", 0),
        followup_message_id("email/q", source.message_id, "email.sent", 1),
    ]
    assert [f.model_dump(exclude={"message_id"}) for f in stamped] == [
        f.model_dump(exclude={"message_id"}) for f in followups
    ]


def test_follow_ups_are_counted_per_type() -> None:
    source = rsvp_created()
    sent = email_sent_for(source)

    alone = with_followup_ids("email/q", source.message_id, [sent])
    after_another_type = with_followup_ids(
        "email/q", source.message_id, [sent.model_copy(update={"type": "email.other"}), sent]
    )

    assert after_another_type[1].message_id == alone[0].message_id
