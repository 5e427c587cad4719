"""Headers that say where a message came from and why it failed (design §6.5).

A retried message carries its attempt count, its first route and its last
error; a dead-lettered one carries the full fault description that the DLQ
admin pages and the replay tools read. Existing headers are kept, so a
message's history (``x-death``, ``x-replay-count``, ``traceparent``) survives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from aio_pika.abc import HeadersType
from pamqp.common import FieldValue

from shared.messaging.codec import ATTEMPTS_HEADER

FAULT_REASON = "x-fault-reason"
EXCEPTION_TYPE = "x-exception-type"
EXCEPTION_MESSAGE = "x-exception-message"
FAILED_AT = "x-failed-at"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
ORIGINAL_QUEUE = "x-original-queue"
LAST_ERROR = "x-last-error"

#: Long enough for a stack of causes, short enough for a header table.
MAX_EXCEPTION_MESSAGE = 1000

#: Fault reasons the runtime itself assigns (handlers' errors bring their own).
RETRIES_EXHAUSTED = "retries_exhausted"
INVALID_MESSAGE = "invalid_message"


@dataclass(frozen=True)
class SourceRoute:
    """Where a delivery came from: the exchange and routing key it was published with."""

    exchange: str
    routing_key: str


def truncated(text: str, limit: int = MAX_EXCEPTION_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(error: BaseException) -> str:
    """``Type: message`` — what an operator reads first in ``x-last-error``."""
    text = str(error)
    name = type(error).__name__
    return truncated(f"{name}: {text}" if text else name)


def original_route(headers: Mapping[str, FieldValue], delivered_via: SourceRoute) -> SourceRoute:
    """The first route a message took: kept in headers once it has been retried.

    A retried message comes back through the default exchange with the queue
    name as routing key; the route that matters for replay is the first one.
    """
    exchange = headers.get(ORIGINAL_EXCHANGE)
    routing_key = headers.get(ORIGINAL_ROUTING_KEY)
    if isinstance(exchange, str) and isinstance(routing_key, str):
        return SourceRoute(exchange, routing_key)
    return delivered_via


def retry_headers(
    headers: Mapping[str, FieldValue], *, attempts: int, route: SourceRoute, error: BaseException
) -> HeadersType:
    """Headers for the copy that waits in a delay queue before the next attempt."""
    return {
        **headers,
        ATTEMPTS_HEADER: attempts,
        ORIGINAL_EXCHANGE: route.exchange,
        ORIGINAL_ROUTING_KEY: route.routing_key,
        LAST_ERROR: describe(error),
    }


def fault_headers(
    headers: Mapping[str, FieldValue],
    *,
    reason: str,
    error: BaseException,
    attempts: int,
    route: SourceRoute,
    queue: str,
    failed_at: datetime | None = None,
) -> HeadersType:
    """Headers for the copy that goes to ``<queue>.dlq``, saying why it is there."""
    return {
        **headers,
        FAULT_REASON: reason,
        EXCEPTION_TYPE: type(error).__name__,
        EXCEPTION_MESSAGE: truncated(str(error)),
        FAILED_AT: (failed_at or datetime.now(UTC)).astimezone(UTC).isoformat(),
        ATTEMPTS_HEADER: attempts,
        ORIGINAL_EXCHANGE: route.exchange,
        ORIGINAL_ROUTING_KEY: route.routing_key,
        ORIGINAL_QUEUE: queue,
    }
