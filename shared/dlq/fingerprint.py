"""Failure groups: which dead letters failed the same way.

A group is a fingerprint of the origin queue, the message type, the exception
type and the exception message with what differs between messages of one
failure (ids, e-mail and IP addresses, numbers, quoted values) replaced by
placeholders, so "550 5.1.1 <ann@x.org>: no such user" and the same for
bob@y.org land in one group, as in NServiceBus ServicePulse's failure groups.
"""

from __future__ import annotations

import hashlib
import re

#: Applied in order: the specific shapes first, so a UUID is not read as numbers.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "<id>",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"https?://\S+"), "<url>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b[0-9a-fA-F]{16,}\b"), "<hex>"),
    (re.compile(r"'[^']*'"), "'<value>'"),
    (re.compile(r"\d+(?:\.\d+)*"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def normalised(message: str | None) -> str:
    """The exception message with its per-message details replaced by placeholders."""
    text = message or ""
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text.strip()


def failure_group(
    origin_queue: str, message_type: str | None, exception_type: str | None, message: str | None
) -> str:
    """A short stable key of the failure group (hex, 16 characters)."""
    parts = (origin_queue, message_type or "", exception_type or "", normalised(message))
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]
