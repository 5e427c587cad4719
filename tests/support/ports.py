"""Free loopback ports for processes a test starts."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_block(size: int) -> int:
    """A base port B such that B..B+size-1 looked free just now."""
    for _ in range(50):
        base = free_port()
        if base + size >= 65535:
            continue
        try:
            for offset in range(size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports found")
