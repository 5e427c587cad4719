"""What a replay publishes: the copy of a stored dead letter, and where it goes.

A replay reads only :data:`COPY_COLUMNS` of each claimed row and builds the
AMQP properties of its copy straight from them, with no message object in
between: at thousands of copies a second that work is a share of the
replay's CPU (the exception text, ``x-death`` and the failure-group facts
stay in the store).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

import asyncpg
import orjson
from pamqp import commands as spec

from shared.dlq.archive import REPLAY_ID
from shared.dlq.selection import copy_headers
from shared.messaging.batch_publisher import OutgoingMessage

#: The columns of ``dead_letters`` a replay needs to send a copy and mark its row.
COPY_COLUMNS = (
    "id, message_id, type, original_exchange, original_routing_key, original_queue,"
    " replay_count, headers, properties, body"
)
PERSISTENT = 2


class ReplayTarget(enum.Enum):
    """Where a replayed copy is published."""

    #: to the origin queue alone, through the default exchange (the default)
    QUEUE = "queue"
    #: back through the original exchange with the original routing key: a
    #: fanout exchange hands the copy to every bound queue again, and their
    #: idempotent consumers ack the ones they had already handled
    EXCHANGE = "exchange"


def replay_copy(
    row: asyncpg.Record, replay_id: uuid.UUID, replayed_at: str, route: ReplayTarget
) -> OutgoingMessage:
    """The copy a replay publishes: same id, type and body; attempts reset; replay counted.

    ``x-death`` stays in the store: a history read back from JSON is not the
    broker's own table any more, and the broker starts a fresh one.
    """
    stored_headers = orjson.loads(row["headers"])
    stored_headers.pop("x-death", None)
    headers = copy_headers(
        stored_headers,
        original_exchange=row["original_exchange"],
        original_routing_key=row["original_routing_key"],
        replay_count=row["replay_count"],
        replayed_at=replayed_at,
    )
    headers[REPLAY_ID] = str(replay_id)
    properties = orjson.loads(row["properties"])
    timestamp = properties.get("timestamp")
    if route is ReplayTarget.EXCHANGE:
        exchange, routing_key = row["original_exchange"], row["original_routing_key"]
    else:
        exchange, routing_key = "", row["original_queue"]
    return OutgoingMessage(
        exchange,
        routing_key,
        spec.Basic.Properties(
            content_type=properties.get("content_type"),
            correlation_id=properties.get("correlation_id"),
            app_id=properties.get("app_id"),
            timestamp=datetime.fromisoformat(timestamp) if isinstance(timestamp, str) else None,
            message_id=row["message_id"],
            message_type=row["type"],
            delivery_mode=PERSISTENT,
            headers=headers,
        ),
        row["body"],
    )
