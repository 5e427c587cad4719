"""The patterns the OpenAPI document declares say exactly what the validators take.

A client that checks its request against the document must neither send
what the service refuses nor hold back what it accepts; schemathesis probes
this against the running API, these properties probe it everywhere.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi import HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st

from calendar_service.api.fields import (
    MULTILINE_TEXT_PATTERN,
    PLAIN_TEXT_PATTERN,
    _multiline_text,
    _plain_text,
)
from calendar_service.api.pagination import CURSOR_PATTERN, decode_cursor, encode_cursor

#: The characters where the rules differ: whitespace at the ends, control characters inside.
TRICKY = list(" \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2028\x00\x7f\x9f\x08ab\u00e9")


def accepted(validator: Callable[[str], str], value: str) -> bool:
    try:
        validator(value)
    except ValueError:
        return False
    return True


@settings(max_examples=500)
@given(st.text(st.sampled_from(TRICKY), max_size=8))
def test_one_line_text_matches_its_pattern_exactly_when_it_is_accepted(value: str) -> None:
    assert bool(re.fullmatch(PLAIN_TEXT_PATTERN, value)) == accepted(_plain_text, value)


@settings(max_examples=500)
@given(st.text(st.sampled_from(TRICKY), max_size=8))
def test_multiline_text_matches_its_pattern_exactly_when_it_is_accepted(value: str) -> None:
    assert bool(re.fullmatch(MULTILINE_TEXT_PATTERN, value)) == accepted(_multiline_text, value)


@settings(max_examples=200)
@given(
    st.datetimes(
        timezones=st.just(UTC), min_value=datetime(1, 1, 2), max_value=datetime(9999, 1, 1)
    ),
    st.uuids(),
)
def test_a_cursor_handed_out_matches_the_pattern_and_reads_back(
    at: datetime, row_id: uuid.UUID
) -> None:
    cursor = encode_cursor(at, row_id)

    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == (at, row_id)


@settings(max_examples=200)
@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_string_of_the_pattern_is_a_position(cursor: str) -> None:
    decoded = decode_cursor(cursor)

    assert decoded is not None
    assert decoded[0].tzinfo is not None


def test_a_cursor_past_year_9999_is_the_end_of_time() -> None:
    far = decode_cursor("9" * 18 + "_" + "0" * 32)

    assert far is not None
    assert far[0] == datetime.max.replace(tzinfo=UTC)


@pytest.mark.parametrize("cursor", ["", "1_" + "0" * 31, "1_" + "0" * 32 + "\n", "x_" + "0" * 32])
def test_anything_else_is_a_400(cursor: str) -> None:
    with pytest.raises(HTTPException) as refused:
        decode_cursor(cursor)

    assert refused.value.status_code == 400
