"""Field types for request bodies: what PostgreSQL and people can safely take."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field


def _plain_text(value: str) -> str:
    """Refuse control characters (NUL, which PostgreSQL cannot store, CR/LF, DEL, C1)."""
    value = value.strip()
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("must not contain control characters")
    if not value:
        raise ValueError("must not be blank")
    return value


def _multiline_text(value: str) -> str:
    """Like one line, but newlines and tabs are kept (normalised to LF)."""
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in value):
        raise ValueError("must not contain control characters other than newlines and tabs")
    if not value:
        raise ValueError("must not be blank")
    return value


def _in_utc(value: datetime) -> datetime:
    """Normalise to UTC; a time that leaves the calendar in UTC is invalid input."""
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date is out of range") from exc


# The validators above as patterns for the OpenAPI document (Python's ``\s`` is
# what ``str.strip`` removes): a client checking against the document refuses
# exactly what the service would. Only documented; the validators decide.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_LINE_CHAR, _WORD_CHAR = f"[^{_CONTROL}]", f"[^\\s{_CONTROL}]"
_TEXT_CHAR = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
PLAIN_TEXT_PATTERN = rf"^\s*{_LINE_CHAR}*{_WORD_CHAR}{_LINE_CHAR}*\s*$"
MULTILINE_TEXT_PATTERN = rf"^\s*{_TEXT_CHAR}*{_WORD_CHAR}{_TEXT_CHAR}*\s*$"

#: One line of human text: a title, a name, a place.
PlainText = Annotated[
    str,
    AfterValidator(_plain_text),
    Field(json_schema_extra={"pattern": PLAIN_TEXT_PATTERN}),
]
#: Paragraphs of human text: an announcement's body.
MultilineText = Annotated[
    str,
    AfterValidator(_multiline_text),
    Field(json_schema_extra={"pattern": MULTILINE_TEXT_PATTERN}),
]


def _not_a_number(value: object) -> object:
    """Refuse what pydantic would read as a Unix time: the document says date-time."""
    if isinstance(value, bool | int | float):
        raise ValueError("must be an RFC 3339 date-time, not a number")
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("must be an RFC 3339 date-time, not a number")
    return value


#: A timezone-aware instant written as RFC 3339, as the document's ``date-time`` says.
Instant = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
#: A timezone-aware instant, stored and returned in UTC.
UtcDateTime = Annotated[Instant, AfterValidator(_in_utc)]


def _not_a_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


#: A whole number; ``true`` is not 1 (as the document's ``integer`` says), 3.0 is 3.
Count = Annotated[int, BeforeValidator(_not_a_bool)]
#: A row id (a dead letter's, for one): a bigint, bounded where JSON numbers stay exact.
RowId = Annotated[int, Field(ge=1, le=2**53), BeforeValidator(_not_a_bool)]
#: An event's seats (constraints before the validator, so the document shows them).
Capacity = Annotated[int, Field(ge=1, le=1_000_000), BeforeValidator(_not_a_bool)]
