"""The write side of the transactional outbox.

A message is added on the same connection, inside the same transaction, as
the change that caused it: both commit or neither does (design §6.1). The
insert fires a statement-level NOTIFY that wakes the relay at commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from calendar_service.db.models import OutboxMessage, table_of
from shared.messaging.topology import COMMAND_ROUTES, COMMANDS_EXCHANGE, EVENTS_EXCHANGE
from shared.schemas import Envelope

_outbox = table_of(OutboxMessage)


def route_for(message: Envelope[Any]) -> tuple[str, str]:
    """Exchange and routing key of a message the calendar service produces."""
    if message.type.startswith("rsvp."):
        return EVENTS_EXCHANGE, ""
    if message.type in COMMAND_ROUTES:
        return COMMANDS_EXCHANGE, COMMAND_ROUTES[message.type]
    raise ValueError(f"the calendar service does not publish {message.type!r}")


class Outbox:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, *messages: Envelope[Any]) -> None:
        rows = []
        for message in messages:
            exchange, routing_key = route_for(message)
            rows.append(
                {
                    "message_id": message.message_id,
                    "message_type": message.type,
                    "exchange": exchange,
                    "routing_key": routing_key,
                    "body": message.model_dump_json().encode(),
                }
            )
        if rows:
            await self._connection.execute(insert(_outbox), rows)
