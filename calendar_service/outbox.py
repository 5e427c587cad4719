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
from shared.messaging.topology import ROUTES, MessageRoute
from shared.schemas import Envelope

_outbox = table_of(OutboxMessage)

#: The broker user the relay publishes as: the outbox holds only its messages.
PUBLISHER = "calendar"


def calendar_route(message_type: str) -> MessageRoute:
    """The topology's route of a message type the calendar service produces.

    Refused here, at write time, rather than by the broker at relay time: a
    message the calendar may not publish would otherwise sit in the outbox.
    """
    route = ROUTES.get(message_type)
    if route is None or route.publisher != PUBLISHER:
        raise ValueError(f"the calendar service does not publish {message_type!r}")
    return route


class Outbox:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, *messages: Envelope[Any]) -> None:
        rows = []
        for message in messages:
            route = calendar_route(message.type)
            rows.append(
                {
                    "message_id": message.message_id,
                    "message_type": message.type,
                    "exchange": route.exchange,
                    "routing_key": route.routing_key,
                    "body": message.model_dump_json().encode(),
                }
            )
        if rows:
            await self._connection.execute(insert(_outbox), rows)
