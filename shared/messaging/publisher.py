"""Publishing that returns only once the broker has taken responsibility (design §6.3).

Every publish is persistent, mandatory and confirmed: ``publish`` returns
after the broker's ``basic.ack``; a ``basic.nack`` or an unroutable message
(``basic.return``) raises :class:`PublishNotConfirmed`. Services hold no
``configure`` permission, so exchanges are looked up, never declared.
"""

from __future__ import annotations

from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractMessage, HeadersType
from aio_pika.exceptions import DeliveryError, PublishError

from shared.messaging.codec import envelope_to_amqp
from shared.messaging.topology import route_of
from shared.schemas import Envelope

#: How long to wait for a confirm before giving the message up as unpublished.
CONFIRM_TIMEOUT_S = 30.0


class PublishNotConfirmed(RuntimeError):
    """The broker refused the message (nack) or could not route it (return)."""


class Publisher:
    """Confirmed publishing on one channel opened with ``publisher_confirms=True``.

    The channel should also be opened with ``on_return_raises=True`` (as
    :meth:`ConsumerRuntime` does); without it a returned message is still
    detected from the publish result and reported the same way.
    """

    def __init__(self, channel: AbstractChannel, *, confirm_timeout: float = CONFIRM_TIMEOUT_S):
        self._channel = channel
        self._confirm_timeout = confirm_timeout
        self._exchanges: dict[str, AbstractExchange] = {}

    async def publish(
        self,
        envelope: Envelope[Any],
        *,
        exchange: str,
        routing_key: str,
        headers: HeadersType | None = None,
    ) -> None:
        """Publish ``envelope`` and wait for the broker's confirm."""
        await self.publish_raw(envelope_to_amqp(envelope, headers=headers), exchange, routing_key)

    async def publish_raw(self, message: AbstractMessage, exchange: str, routing_key: str) -> None:
        """Publish a ready-made message (a retry, a dead letter, a replay) with confirm."""
        target = await self._exchange(exchange)
        try:
            result = await target.publish(
                message, routing_key, mandatory=True, timeout=self._confirm_timeout
            )
        except (DeliveryError, PublishError) as exc:
            raise PublishNotConfirmed(f"{exchange or '(default)'}/{routing_key}: {exc!r}") from exc
        if not isinstance(result, aiormq.spec.Basic.Ack):
            raise PublishNotConfirmed(
                f"{exchange or '(default)'}/{routing_key}: not confirmed ({result!r})"
            )

    async def _exchange(self, name: str) -> AbstractExchange:
        if name == "":
            return self._channel.default_exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await self._channel.get_exchange(name, ensure=False)
            self._exchanges[name] = exchange
        return exchange


async def publish_routed(publisher: Publisher, message: AbstractMessage) -> None:
    """Publish a ready-made message (a follow-up) on the topology's route for its type."""
    route = route_of(message.type or "")
    await publisher.publish_raw(message, route.exchange, route.routing_key)
