"""The calendar API served by uvicorn on a loopback port, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from calendar_service.app import create_app
from calendar_service.config import Settings
from tests.support.ports import free_port


@contextmanager
def served_api(settings: Settings, *, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``create_app(settings)`` with its lifespan; yields the base URL until the block ends.

    A real server (not an ASGI transport) so clients outside the process, a
    command-line fuzzer for one, speak HTTP to it as to a deployed replica.
    """
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="served-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
