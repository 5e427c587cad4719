"""Admission: at most ``MAX_REQUESTS_IN_FLIGHT`` requests in flight; past it 503 at once.

When the API's event loop is saturated (CPU-bound, not waiting on its pool),
every request it has taken makes slow progress together: nothing is refused
and everything is late (seconds, then tens of seconds). Counting requests in
flight bounds that queue, so a request beyond it is answered 503 with
``Retry-After`` in the time it takes to parse it, and an admitted one is
answered within about ``limit`` times the work of one request (design §8).

The middleware is the outermost of ours so a refusal costs nothing else: no
correlation id, no Redis, no database. Refusals and other sheds are counted
in ``http_requests_shed_total{reason}``.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

import orjson
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from calendar_service.api.middleware import PROBE_PATHS, send_json_reply
from calendar_service.errors import Overloaded, ShedReason

REQUESTS_SHED = Counter(
    "http_requests_shed_total",
    "Requests answered 503 because the API was too busy to take them",
    ["reason"],
)

_admitted_at: ContextVar[float | None] = ContextVar("admitted_at", default=None)


def admitted_at() -> float | None:
    """When this request was admitted (``time.monotonic()``); None outside a request."""
    return _admitted_at.get()


def count_shed(reason: ShedReason) -> None:
    REQUESTS_SHED.labels(reason).inc()


class AdmissionLimit:
    """Refuse with 503 and ``Retry-After`` while ``limit`` requests are in flight.

    The count is this process's (one event loop): each replica sheds its own
    excess. Probes are never refused, so a busy replica stays in the load
    balancer and is not restarted by its supervisor for being busy.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight limit must admit at least one request")
        self.app = app
        self.limit = limit
        self.in_flight = 0
        refusal = Overloaded("in_flight")
        self._body = orjson.dumps({"detail": str(refusal)})
        self._headers = [(b"retry-after", str(refusal.retry_after_s).encode())]
        self._shed = REQUESTS_SHED.labels("in_flight")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            self._shed.inc()
            await send_json_reply(send, 503, self._body, self._headers)
            return
        # counted before the first await, so requests started together see each other
        self.in_flight += 1
        token = _admitted_at.set(time.monotonic())
        try:
            await self.app(scope, receive, send)
        finally:
            # also when the request failed or was cancelled (client gone, shutdown)
            self.in_flight -= 1
            _admitted_at.reset(token)
