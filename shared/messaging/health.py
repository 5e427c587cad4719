"""A tiny HTTP server for a background process: ``/healthz``, ``/readyz``, ``/metrics``.

Consumers have no web framework, and three read-only endpoints do not need
one: this answers one GET per connection with HTTP/1.1 and closes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_REQUEST_TIMEOUT_S = 5.0


class HealthServer:
    """Serves liveness, readiness and metrics on ``host:port`` (port 0 picks one)."""

    def __init__(
        self,
        *,
        ready: Callable[[], bool],
        metrics: Callable[[], bytes],
        port: int,
        host: str = "0.0.0.0",
    ) -> None:
        self._ready = ready
        self._metrics = metrics
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("health and metrics on port %d", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT_S):
                request_line = await reader.readline()
                while (await reader.readline()).strip():
                    pass  # headers are not needed
            status, content_type, body = self._respond(request_line.decode("latin-1"))
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                    f"Content-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                + (body if not request_line.startswith(b"HEAD ") else b"")
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a client that went away needs no answer
        finally:
            writer.close()

    def _respond(self, request_line: str) -> tuple[int, str, bytes]:
        method, _, rest = request_line.partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            if self._ready():
                return 200, "text/plain", b"ready\n"
            return 503, "text/plain", b"not ready\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, self._metrics()
        return 404, "text/plain", b"not found\n"
