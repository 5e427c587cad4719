"""MIME parts put straight into wire bytes, as the compat32 generator would write them.

The emails have one fixed shape (text and HTML alternatives, perhaps with an
``.ics`` beside them), so there is nothing for ``email.generator`` to work
out: each part is its headers, folded by the policy exactly as the generator
folds them (:data:`WIRE`), a blank line and its body with CRLF line
endings; a multipart is its boundary lines around its parts. That is the
generator's output byte for byte (the renderer's golden tests hold it to
that), without its per-part policy clones, buffers and boundary parsing,
which cost more than the rest of building an email.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.header import Header
from email.policy import Compat32
from typing import Any

#: The line endings the generator turns into CRLF in a body.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class WirePolicy(Compat32):
    """compat32 with CRLF that refuses line breaks in a header value.

    compat32 does not refuse them itself, so this policy does, and every
    header made from user text is made one line before it gets here.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        if isinstance(value, str):
            if "\r" in value or "\n" in value:
                raise ValueError(f"line break in the {name} header")
            if value.isascii() and len(name) + len(value) < 77:
                return f"{name}: {value}\r\n".encode("ascii")  # nothing to fold or encode
        return super().fold_binary(name, value)


WIRE = WirePolicy(linesep="\r\n")


@dataclass(slots=True)
class Part:
    """A MIME part: its headers in order and its body, ready for the wire."""

    body: bytes
    headers: list[tuple[str, str | Header]] = field(default_factory=list)

    def add_header(self, name: str, value: str | Header) -> None:
        self.headers.append((name, value))

    def as_bytes(self) -> bytes:
        fold = WIRE.fold_binary
        return b"".join([*(fold(name, value) for name, value in self.headers), b"\r\n", self.body])


def text(body: str, subtype: str, params: str = "") -> Part:
    """A UTF-8 text part: 7bit if it can be, else quoted-printable."""
    if body.isascii() and max(map(len, body.splitlines()), default=0) <= 998:
        encoding, payload = "7bit", body
    else:  # binascii's quoted-printable is C, the email package's is Python
        encoding = "quoted-printable"
        payload = binascii.b2a_qp(body.encode("utf-8")).decode("ascii")
    part = Part(_LINE_BREAK.sub("\r\n", payload).encode("ascii"))
    part.add_header("Content-Type", f'text/{subtype}; charset="utf-8"{params}')
    part.add_header("Content-Transfer-Encoding", encoding)
    return part


def multipart(subtype: str, boundary: str, *parts: Part) -> Part:
    """``multipart/<subtype>`` of ``parts``; ``boundary`` must occur in none of them."""
    delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
    body = b"".join(
        [
            delimiter[2:],
            delimiter.join(part.as_bytes() for part in parts),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        ]
    )
    container = Part(body)
    container.add_header("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
    return container
