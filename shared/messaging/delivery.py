"""What happens to one delivered message: handle it, then publish, then ack (design §6).

Every outcome ends the same way: whatever must be published (follow-ups, a
retry copy, a dead letter) is confirmed by the broker first, and only then is
the delivery acked. A crash in between duplicates a message, never loses one;
the inbox turns the duplicate into a no-op. If publishing fails the delivery
is settled again after growing pauses (:data:`SETTLE_PAUSES_S`), and only
then returned to its queue (nack with requeue). A message whose inbox could
not be reached was not attempted: it is held and tried again without using
up a retry tier (see holding.py), and a record that cannot be written after
the handler succeeded is written again until it lands, never by running the
handler twice.

    body does not validate        -> dlx, reason invalid_message
    type the subscription refuses -> dlx, reason unexpected_type
    inbox unreachable             -> held, tried again; attempt count unchanged
    claimed by another worker     -> retry tier (it comes back as a duplicate)
    message id already in inbox   -> republish stored follow-ups
    handler returns follow-ups    -> inbox record and follow-ups' publish, together
    handler raises                -> retry tier or dlx (see failures.py)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from shared.messaging.acks import Acknowledger
from shared.messaging.codec import (
    encoded_envelope_to_amqp,
    log_context,
    read_envelope,
    stored_body_to_amqp,
)
from shared.messaging.errors import InvalidMessageError, NotAttempted, TransientError
from shared.messaging.failures import FailureRouting
from shared.messaging.followups import with_followup_ids
from shared.messaging.holding import Hold
from shared.messaging.inbox import Claim, Inbox
from shared.messaging.metrics import RuntimeMetrics
from shared.messaging.publisher import Publisher, publish_routed
from shared.messaging.subscription import Subscription
from shared.schemas import Envelope, InvalidMessage
from shared.service.database import until_it_lands

log = logging.getLogger(__name__)

#: Pauses between tries to settle a delivery whose publish failed (a follow-up,
#: retry copy or dead letter not confirmed), keeping the delivery meanwhile.
#: Giving it back at once would count against the queue's delivery limit
#: (5): a few seconds of broker trouble would dead-letter handled messages.
#: Settling again is safe: a handled message is found in the inbox and only
#: its recorded follow-ups are published again. After the last pause the
#: delivery goes back to its queue.
SETTLE_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 16.0)


class DeliveryProcessor:
    """Settles the AMQP deliveries of one subscription; one instance per subscription."""

    def __init__(
        self,
        subscription: Subscription[Any],
        *,
        inbox: Inbox,
        publisher: Publisher,
        metrics: RuntimeMetrics,
        runtime: str,
        acks: Acknowledger | None = None,
    ) -> None:
        self._sub = subscription
        # the runtime shares one across its subscriptions, so their acks coalesce
        self._acks = acks or Acknowledger()
        self._inbox = inbox
        self._publisher = publisher
        self._metrics = metrics.for_queue(runtime, subscription.queue.name)
        self._failures = FailureRouting(subscription, publisher=publisher, metrics=self._metrics)

    async def process(self, message: AbstractIncomingMessage) -> None:
        """Settle ``message``: ack once its outcome is published, or return it."""
        in_flight = self._metrics.in_flight
        in_flight.inc()
        try:
            await self._settle(message)
        except asyncio.CancelledError:  # shutting down: straight back to the queue
            await self._acks.return_to_queue(message)
            raise
        finally:
            in_flight.dec()

    async def _settle(self, message: AbstractIncomingMessage) -> None:
        pauses = iter((*SETTLE_PAUSES_S, None))
        hold = Hold()
        while True:
            try:
                if hold.expired and hold.error is not None:
                    await self._failures.postpone(message, hold.error)
                else:
                    await self._handle(message)
            except NotAttempted as error:
                if _channel_closed(message):  # the broker has taken it back
                    return
                self._metrics.held.inc()
                await hold.wait(error)
                continue
            except Exception:
                pause = next(pauses)
                # a closed channel's deliveries the broker takes back itself
                if pause is None or _channel_closed(message):
                    log.exception("could not settle; returning it", extra=log_context(message))
                    await self._acks.return_to_queue(message)
                    return
                log.exception(
                    "could not settle; again in %.0f s", pause, extra=log_context(message)
                )
                await asyncio.sleep(pause)
                continue
            if hold.error is not None:
                log.info("settled after %.1f s held", hold.held_s, extra=log_context(message))
            await self._acks.ack(message)
            return

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = read_envelope(message)
        except InvalidMessage as exc:
            invalid = InvalidMessageError(str(exc))
            await self._failures.dead_letter(message, None, invalid, reason=invalid.reason)
            return
        if not self._sub.takes(envelope):
            unexpected = self._sub.unexpected(envelope)
            await self._failures.dead_letter(
                message, envelope, unexpected, reason=unexpected.reason
            )
            return
        publishing: asyncio.Future[None] | None = None
        try:
            async with self._inbox.claim(self._sub.consumer, envelope.message_id) as claim:
                if claim.busy:
                    raise TransientError(
                        "another worker is handling this message right now", reason="in_progress"
                    )
                if claim.followups is not None:
                    stored = [stored_body_to_amqp(body) for body in claim.followups]
                else:
                    with self._metrics.handler_duration.time():
                        returned = await self._sub.handler(envelope)
                    publishing = await self._record_while_publishing(claim, envelope, returned)
        except NotAttempted:
            raise  # held by _settle, no attempt counted
        except Exception as exc:
            await self._failures.route(message, envelope, exc)
            return
        if publishing is None:
            await self._publish_followups(stored)
            self._metrics.duplicates.inc()
            log.info("duplicate: follow-ups republished", extra=log_context(message, envelope))
            return
        await publishing  # its failure is settled again in place, see process()
        self._metrics.handled.inc()
        # the success path is counted in metrics; a line per message would cost
        # more CPU than the runtime's own work (WARNING and ERROR stay)
        log.debug("handled", extra=log_context(message, envelope))

    async def _record_while_publishing(
        self, claim: Claim, envelope: Envelope[Any], returned: Sequence[Envelope[Any]]
    ) -> asyncio.Future[None]:
        """Record the follow-ups and, at the same time, publish them; return the publishing.

        The ack waits for both; neither needs the other first. The work is
        done by now (a mail sent), so a record the database was away for is
        written again until it lands: failing the message would do the work
        twice. Had the record failed for another reason after the publish,
        the message goes to its retry tier and the follow-up ids, derived
        from it, let the receiver drop the copy.
        """
        followups = with_followup_ids(self._sub.consumer, envelope.message_id, returned)
        bodies = [followup.model_dump_json().encode() for followup in followups]
        outgoing = [
            encoded_envelope_to_amqp(followup, body)
            for followup, body in zip(followups, bodies, strict=True)
        ]
        publishing = asyncio.ensure_future(self._publish_followups(outgoing))
        try:
            await until_it_lands(
                lambda: claim.record(bodies), what=f"inbox record of {envelope.message_id}"
            )
        except BaseException:
            publishing.cancel()  # the message is routed or returned: its outcome is moot
            publishing.add_done_callback(_retrieve)
            raise
        return publishing

    async def _publish_followups(self, messages: Sequence[aio_pika.Message]) -> None:
        """Publish all of them at once and wait for their confirms together."""
        if len(messages) == 1:  # the usual case: no gather to set up
            await publish_routed(self._publisher, messages[0])
        elif messages:
            outcomes = await asyncio.gather(
                *(publish_routed(self._publisher, m) for m in messages), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome


def _channel_closed(message: AbstractIncomingMessage) -> bool:
    """True once the delivery's channel is closed (aio-pika raises on a lost one)."""
    try:
        return bool(message.channel.is_closed)
    except Exception:
        return True


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a publish whose outcome no longer matters as looked at (no "never retrieved")."""
    if not future.cancelled():
        future.exception()
