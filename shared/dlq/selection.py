"""What a dead letter says about itself, and what its replayed copy carries.

A message in ``<queue>.dlq`` got there one of two ways: our runtime
dead-lettered it with fault headers (``x-fault-reason``, ``x-exception-type``
… design §6.5), or the broker did (delivery limit, rejection), leaving only
``x-death``. :func:`read_dead_letter` turns either into one
:class:`DeadLetter`; :func:`replay_headers` says what its replayed copy
carries. Both are pure: no broker here, so they are unit-tested on plain
headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.messaging import faults
from shared.messaging.codec import attempts_of

REPLAY_COUNT = "x-replay-count"
REPLAYED_AT = "x-replayed-at"
#: Added by quorum queues on redelivery; the broker's, not part of the message.
DELIVERY_COUNT = "x-delivery-count"
#: What a replayed copy no longer carries: it has not failed (yet) in its new life.
FAILURE_HEADERS = (
    faults.FAULT_REASON,
    faults.EXCEPTION_TYPE,
    faults.EXCEPTION_MESSAGE,
    faults.FAILED_AT,
    faults.LAST_ERROR,
    DELIVERY_COUNT,
)


@dataclass(frozen=True)
class DeadLetter:
    """The facts of one dead letter, from our fault headers or else from ``x-death``."""

    message_id: str | None
    type: str | None
    reason: str
    exception_type: str | None
    exception_message: str | None
    attempts: int
    failed_at: datetime | None
    original_exchange: str
    original_routing_key: str
    original_queue: str
    replay_count: int = 0
    headers: Mapping[str, Any] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The newest ``x-death`` entry: the broker keeps them most recent first."""
    deaths = headers.get("x-death")
    if isinstance(deaths, Sequence) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def read_dead_letter(
    headers: Mapping[str, Any],
    *,
    message_id: str | None,
    message_type: str | None,
    dead_letter_queue: str,
    body: bytes = b"",
) -> DeadLetter:
    """Read a dead letter's facts; ``dead_letter_queue`` names its origin as a last resort."""
    death = _latest_death(headers)
    routing_keys = death.get("routing-keys")
    death_key = (
        _text(routing_keys[0]) if isinstance(routing_keys, Sequence) and routing_keys else None
    )
    fallback_queue = dead_letter_queue.removesuffix(".dlq")
    origin_queue = (
        _text(headers.get(faults.ORIGINAL_QUEUE)) or _text(death.get("queue")) or fallback_queue
    )
    exchange = _text(headers.get(faults.ORIGINAL_EXCHANGE))
    routing_key = _text(headers.get(faults.ORIGINAL_ROUTING_KEY))
    if exchange is None or routing_key is None:
        exchange = _text(death.get("exchange")) or ""
        routing_key = death_key or origin_queue
    attempts = attempts_of(headers)
    if not attempts and isinstance(death.get("count"), int):
        attempts = int(death["count"])
    replays = headers.get(REPLAY_COUNT)
    return DeadLetter(
        message_id=message_id,
        type=message_type,
        reason=_text(headers.get(faults.FAULT_REASON)) or _text(death.get("reason")) or "unknown",
        exception_type=_text(headers.get(faults.EXCEPTION_TYPE)),
        exception_message=_text(headers.get(faults.EXCEPTION_MESSAGE)),
        attempts=attempts,
        failed_at=_timestamp(headers.get(faults.FAILED_AT)) or _timestamp(death.get("time")),
        original_exchange=exchange,
        original_routing_key=routing_key,
        original_queue=origin_queue,
        replay_count=replays if isinstance(replays, int) and not isinstance(replays, bool) else 0,
        headers=headers,
        body=body,
    )


def replay_headers(letter: DeadLetter, *, now: datetime | None = None) -> dict[str, Any]:
    """Headers of the replayed copy: attempts reset, failure facts gone, replay counted.

    The first route (``x-original-*``) and the broker's ``x-death`` history stay,
    so a copy that fails again still says where it came from.
    """
    return copy_headers(
        dict(letter.headers),
        original_exchange=letter.original_exchange,
        original_routing_key=letter.original_routing_key,
        replay_count=letter.replay_count,
        replayed_at=(now or datetime.now(UTC)).astimezone(UTC).isoformat(),
    )


def copy_headers(
    headers: dict[str, Any],
    *,
    original_exchange: str,
    original_routing_key: str,
    replay_count: int,
    replayed_at: str,
) -> dict[str, Any]:
    """:func:`replay_headers` made in place in ``headers`` (a replay makes thousands a second)."""
    for name in FAILURE_HEADERS:
        headers.pop(name, None)
    headers[faults.ORIGINAL_EXCHANGE] = original_exchange
    headers[faults.ORIGINAL_ROUTING_KEY] = original_routing_key
    headers["x-attempts"] = 0
    headers[REPLAY_COUNT] = replay_count + 1
    headers[REPLAYED_AT] = replayed_at
    return headers
