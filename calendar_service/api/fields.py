"""Field types for request bodies: what PostgreSQL and people can safely take."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


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


#: One line of human text: a title, a name, a place.
PlainText = Annotated[str, AfterValidator(_plain_text)]
#: Paragraphs of human text: an announcement's body.
MultilineText = Annotated[str, AfterValidator(_multiline_text)]
#: A timezone-aware instant, stored and returned in UTC.
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_in_utc)]
