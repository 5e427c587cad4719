"""Failure groups: the same failure of different messages shares one fingerprint."""

from __future__ import annotations

from shared.dlq.fingerprint import failure_group, normalised


def test_ids_addresses_and_numbers_are_normalised_away() -> None:
    text = "550 5.1.1 <ann@x.org> rejected for 5f0c2a1e-9d3b-4c1e-8f00-0a1b2c3d4e5f from 10.0.0.7"

    assert normalised(text) == "<n> <n> <<email>> rejected for <id> from <ip>"


def test_the_same_failure_of_two_messages_is_one_group() -> None:
    first = failure_group("email.commands", "email.send", "PermanentError", "550 <a@x.org>")
    second = failure_group("email.commands", "email.send", "PermanentError", "550 <b@y.org>")

    assert first == second


def test_queue_type_exception_and_wording_each_split_groups() -> None:
    base = ("email.commands", "email.send", "PermanentError", "550 no such user")
    variants = [
        ("push.commands", *base[1:]),
        (base[0], "email.reminder", *base[2:]),
        (*base[:2], "TransientError", base[3]),
        (*base[:3], "554 relay denied"),
    ]

    assert len({failure_group(*base), *(failure_group(*v) for v in variants)}) == 5
