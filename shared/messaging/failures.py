"""Where a failed message goes: a delay queue for another attempt, or its DLQ.

The handler's exception decides (design §6.4): a ``PermanentError`` is
dead-lettered at once; a ``TransientError``, a timeout or an I/O error waits
in the next retry tier until the tiers are used up. Any other exception is a
bug and is treated as transient, so it retries a few times and then lands in
the DLQ under its own type name instead of crash-looping the consumer.
"""

from __future__ import annotations

import logging
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from shared.messaging import faults
from shared.messaging.codec import attempts_of, envelope_to_amqp, log_context, republished
from shared.messaging.errors import MessagingError, PermanentError, TransientError
from shared.messaging.followups import with_followup_ids
from shared.messaging.holding import POSTPONE_TIER_S
from shared.messaging.metrics import QueueMetrics
from shared.messaging.publisher import Publisher, publish_routed
from shared.messaging.retries import retry_delay_for
from shared.messaging.subscription import Subscription
from shared.messaging.topology import DEAD_LETTER_EXCHANGE
from shared.schemas import Envelope

log = logging.getLogger(__name__)

#: Failures a handler may let escape that are worth another attempt as they are.
EXPECTED_TRANSIENT = (TransientError, TimeoutError, ConnectionError, OSError)


class FailureRouting:
    """Publishes a failed delivery to its retry tier or its DLQ (the caller then acks)."""

    def __init__(
        self,
        subscription: Subscription[Any],
        *,
        publisher: Publisher,
        metrics: QueueMetrics,
    ) -> None:
        self._sub = subscription
        self._publisher = publisher
        self._metrics = metrics

    async def route(
        self, message: AbstractIncomingMessage, envelope: Envelope[Any], error: Exception
    ) -> None:
        if isinstance(error, PermanentError):
            await self.dead_letter(message, envelope, error, reason=error.reason)
            return
        if not isinstance(error, EXPECTED_TRANSIENT):
            log.error(
                "unexpected %s, treated as transient",
                type(error).__name__,
                exc_info=error,
                extra=log_context(message, envelope),
            )
        failed = attempts_of(message.headers) + 1
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        delay = retry_delay_for(failed, retry_after)
        if delay is None:
            await self.dead_letter(message, envelope, error, reason=faults.RETRIES_EXHAUSTED)
            return
        headers = faults.retry_headers(
            message.headers, attempts=failed, route=_route(message), error=error
        )
        await self._publisher.publish_raw(
            republished(message, headers),
            self._sub.queue.retry_exchange,
            self._sub.queue.retry_queue(delay),
        )
        self._metrics.retried.inc()
        log.warning(
            "attempt %d failed, retry in %ds: %s",
            failed,
            delay,
            faults.describe(error),
            extra=log_context(message, envelope),
        )

    async def postpone(self, message: AbstractIncomingMessage, error: Exception) -> None:
        """Wait in a delay queue with the attempt count unchanged: it was not attempted."""
        attempts = attempts_of(message.headers)
        headers = faults.retry_headers(
            message.headers, attempts=attempts, route=_route(message), error=error
        )
        await self._publisher.publish_raw(
            republished(message, headers),
            self._sub.queue.retry_exchange,
            self._sub.queue.retry_queue(POSTPONE_TIER_S),
        )
        log.warning(
            "held too long, waits %ds (attempts still %d): %s",
            POSTPONE_TIER_S,
            attempts,
            faults.describe(error),
            extra=log_context(message),
        )

    async def dead_letter(
        self,
        message: AbstractIncomingMessage,
        envelope: Envelope[Any] | None,
        error: Exception,
        *,
        reason: str,
    ) -> None:
        """Publish the failure follow-ups, then the message itself to ``<queue>.dlq``."""
        if envelope is not None:
            for followup in self._failure_followups(message, envelope, error, reason):
                await publish_routed(self._publisher, envelope_to_amqp(followup))
        headers = faults.fault_headers(
            message.headers,
            reason=reason,
            error=error,
            attempts=attempts_of(message.headers) + 1,
            route=_route(message),
            queue=self._sub.queue.name,
        )
        await self._publisher.publish_raw(
            republished(message, headers), DEAD_LETTER_EXCHANGE, self._sub.queue.name
        )
        self._metrics.dead_lettered(reason).inc()
        log.warning(
            "dead-lettered (%s): %s",
            reason,
            faults.describe(error),
            extra=log_context(message, envelope),
        )

    def _failure_followups(
        self,
        message: AbstractIncomingMessage,
        envelope: Envelope[Any],
        error: Exception,
        reason: str,
    ) -> list[Envelope[Any]]:
        if self._sub.on_dead_letter is None or not self._sub.takes(envelope):
            return []  # a type the handler does not take has no follow-ups either
        try:
            followups = self._sub.on_dead_letter(envelope, _as_messaging_error(error, reason))
        except Exception:
            # A bug here must not keep the message out of its DLQ, where the
            # fault headers still tell the story.
            log.exception(
                "on_dead_letter failed; dead-lettering without follow-ups",
                extra=log_context(message, envelope),
            )
            return []
        return with_followup_ids(self._sub.consumer, envelope.message_id, followups)


def _as_messaging_error(error: Exception, reason: str) -> MessagingError:
    """The error ``on_dead_letter`` sees, whose ``reason`` is the ``x-fault-reason``."""
    if isinstance(error, MessagingError) and error.reason == reason:
        return error
    wrapped = PermanentError(faults.describe(error), reason=reason)
    wrapped.__cause__ = error
    return wrapped


def _route(message: AbstractIncomingMessage) -> faults.SourceRoute:
    delivered_via = faults.SourceRoute(message.exchange or "", message.routing_key or "")
    return faults.original_route(message.headers, delivered_via)
