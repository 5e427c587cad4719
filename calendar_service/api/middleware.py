"""Pure ASGI middleware: body size, request context (correlation id and metrics), anonymous tier.

Written as raw ASGI rather than `BaseHTTPMiddleware` because it sits on the
hot path of every request and must not buffer streamed bodies.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import orjson
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calendar_service.api.deps import admit_leniently
from calendar_service.errors import RateLimited
from calendar_service.ratelimit import Counter as LimitCounter
from shared.logs import correlation_id

REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

#: What a load balancer, a supervisor and Prometheus poll: never limited, never refused as busy.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class _RouteMetrics:
    """The two series' children for one method, route and status, found once.

    ``labels()`` takes a lock and builds a tuple key on every call; a handful of
    routes and statuses make few children, so they are remembered here.
    """

    __slots__ = ("count", "latency")

    def __init__(self, method: str, route: str, status: int) -> None:
        self.count = REQUESTS.labels(method, route, str(status))
        self.latency = LATENCY.labels(method, route)


_route_metrics: dict[tuple[str, str, int], _RouteMetrics] = {}


def _metrics_for(method: str, route: str, status: int) -> _RouteMetrics:
    key = (method, route, status)
    found = _route_metrics.get(key)
    if found is None:
        # route is a template ("/events/{event_id}") or "unmatched": the set stays small
        found = _route_metrics[key] = _RouteMetrics(method, route, status)
    return found


async def send_json_reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """Answer 413 for bodies over ``max_bytes``, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = b'{"detail":"request body too large"}'
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await send_json_reply(send, 413, too_large, [])
                return

        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def send_unless_exceeded(message: Message) -> None:
            # the framework may catch our exception and answer 400 itself: drop that
            if not exceeded:
                await send(message)

        with contextlib.suppress(_BodyTooLarge):
            await self.app(scope, limited_receive, send_unless_exceeded)
        if exceeded:
            await send_json_reply(send, 413, too_large, [])


class _BodyTooLarge(Exception):
    pass


class RequestContext:
    """Correlation id in and out (`X-Correlation-ID`), and Prometheus metrics per route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name in (b"x-correlation-id", b"x-request-id"):
                incoming = value.decode("latin-1")[:64]
                break
        cid = incoming or str(uuid.uuid4())
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-correlation-id", cid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            metrics = _metrics_for(method, path, status)
            metrics.latency.observe(time.perf_counter() - started)
            metrics.count.inc()
            correlation_id.reset(token)


class AnonymousRateLimit:
    """``RATE_LIMIT_ANONYMOUS`` per client IP for requests without a bearer token.

    A request with a token is counted in its user's tier when the token is read
    (``api/deps.py``). Health and metrics are not counted: a load balancer polls
    them from one address. Fails open when Redis is down, like the user tiers.
    """

    UNCOUNTED = PROBE_PATHS

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.UNCOUNTED
            or any(name == b"authorization" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        container = scope["app"].state.container
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        counter = LimitCounter(container.limits.anonymous, "anonymous", ip, "requests sent")
        try:
            await admit_leniently(container, [counter])
        except RateLimited as refused:
            body = orjson.dumps({"detail": str(refused)})
            await send_json_reply(
                send, 429, body, [(b"retry-after", str(refused.retry_after_s).encode())]
            )
            return
        await self.app(scope, receive, send)
