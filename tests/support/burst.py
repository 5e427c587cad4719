"""HTTP/1.1 requests from raw sockets, every one written before any answer is read.

httpx spends around a millisecond of CPU on a request; three hundred of them
on a busy machine leave the client over seconds, so the server never sees a
burst and what the client measures is its own lag. Here each request is
bytes written on a connection opened beforehand, and each answer is timed
from the write of its request to the read of its last byte.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TimedAnswer:
    status: int
    headers: dict[str, str]  #: names in lower case
    body: bytes
    took_s: float  #: from the request written to the answer read


def post_json(host: str, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """One ``POST`` as it goes on the wire; the connection closes after its answer."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def burst(host: str, port: int, requests: Sequence[bytes]) -> list[TimedAnswer]:
    """Open a connection per request, then write them all at once and read every answer."""
    connections = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in requests))
    try:
        sent = []
        for (_, writer), request in zip(connections, requests, strict=True):
            writer.write(request)  # a fresh socket takes it whole, now
            sent.append(time.monotonic())
        return await asyncio.gather(
            *(_answer(reader, at) for (reader, _), at in zip(connections, sent, strict=True))
        )
    finally:
        for _, writer in connections:
            writer.close()


async def _answer(reader: asyncio.StreamReader, sent_at: float) -> TimedAnswer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    took = time.monotonic() - sent_at
    return TimedAnswer(int(status_line.split()[1]), headers, body, took)
