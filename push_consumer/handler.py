"""What the push consumer does with a message: one push to each of the user's subscriptions.

A user may have several subscriptions (a phone, a laptop), and each push
service answers on its own. The outcome of one message:

    no subscriptions                 push.sent, status skipped (not an error)
    some service 429/5xx/timeout     TransientError: retried (Retry-After honoured)
    at least one delivered           push.sent, status sent, delivered = n
    every subscription gone          push.sent, status skipped
    none delivered, some 400/413     PushRejected: dead-lettered, push.failed
    any 404/410 along the way        push.subscription_expired for each

Idempotency per subscription. The runtime's inbox makes a *message*
effectively-once, but only once its handler succeeds; a transient failure
on one subscription retries the whole message. So before raising it the
handler records the subscriptions that did accept the push in the
consumer's own sent-devices ledger (``push_deliveries``), and the retry skips them: a
phone that got the push is not buzzed again because a laptop's push
service answered 503. Those rows are written only on that path; when every
push succeeds the inbox record alone is enough, which keeps the common case
at one database read per message. (A crash between a push and either record
can still repeat that push on redelivery; the ``Topic`` header then lets
the push service replace the undelivered copy.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from push_consumer.notification import notification_for
from push_consumer.store import SubscriptionStore, UserDevice
from push_consumer.webpush import PushSender, SubscriptionGone
from shared.messaging.errors import MessagingError, PermanentError, TransientError
from shared.messaging.outcomes import failure_report, outcome_fields
from shared.schemas import (
    Envelope,
    PushFailed,
    PushSend,
    PushSent,
    PushSentPayload,
    PushSubscriptionExpired,
    RsvpMessage,
    SubscriptionExpiredPayload,
)

PRODUCER = "push_consumer"

#: Everything the push consumer takes: what its two queues carry.
PushSource = RsvpMessage | PushSend


class PushRejected(PermanentError):
    """No subscription took the push and some refused it for good (400/413 …).

    Carries the ``push.subscription_expired`` follow-ups of the same attempt,
    so they are published with the ``push.failed`` rather than lost.
    """

    reason = "push_rejected"

    def __init__(self, message: str, *, expired: Sequence[Envelope[Any]]) -> None:
        super().__init__(message)
        self.expired = list(expired)


class PushHandlers:
    """The push consumer's handlers, bound to its subscription store and sender."""

    def __init__(
        self, store: SubscriptionStore, sender: PushSender, *, app_url: str, ttl_s: int
    ) -> None:
        self._store = store
        self._sender = sender
        self._app_url = app_url
        self._ttl_s = ttl_s

    async def on_rsvp_event(self, message: RsvpMessage) -> Sequence[Envelope[Any]]:
        """``rsvp.created|updated|cancelled`` -> a push to the attendee."""
        return await self._push(message, message.data.attendee.user_id)

    async def on_command(self, message: PushSend) -> Sequence[Envelope[Any]]:
        """``push.send`` -> a confirmation again, a reminder or an announcement."""
        return await self._push(message, message.data.recipient.user_id)

    async def _push(self, message: PushSource, user_id: UUID) -> Sequence[Envelope[Any]]:
        subscriptions = await self._store.devices_for(user_id, message.message_id)
        if not subscriptions:
            return [_push_sent(message, "skipped", delivered=0)]
        notification, urgency = notification_for(message, self._app_url)
        plaintext = notification.to_bytes()
        pending = [s for s in subscriptions if not s.already_sent]

        async def send(subscription: UserDevice) -> MessagingError | None:
            try:
                await self._sender.send(
                    subscription.target,
                    plaintext,
                    ttl_s=self._ttl_s,
                    urgency=urgency,
                    topic=message.message_id.hex,
                )
            except MessagingError as error:
                return error
            return None

        errors = await asyncio.gather(*(send(s) for s in pending))
        delivered_now = [s for s, e in zip(pending, errors, strict=True) if e is None]
        delivered = len(subscriptions) - len(pending) + len(delivered_now)

        transient = [e for e in errors if isinstance(e, TransientError)]
        if transient:
            await self._store.record_sent_devices(
                message.message_id, [s.target.subscription_id for s in delivered_now]
            )
            raise _retry_all(transient, len(pending))

        expired = [
            _expired(message, user_id, s, e)
            for s, e in zip(pending, errors, strict=True)
            if isinstance(e, SubscriptionGone)
        ]
        if delivered:
            return [_push_sent(message, "sent", delivered=delivered), *expired]
        rejected = [e for e in errors if e is not None and not isinstance(e, SubscriptionGone)]
        if rejected:
            raise PushRejected(f"no subscription took the push: {rejected[0]}", expired=expired)
        return [_push_sent(message, "skipped", delivered=0), *expired]


def push_failed(message: PushSource, error: MessagingError) -> Sequence[Envelope[Any]]:
    """The follow-ups of a message the runtime dead-letters: the calendar shows `failed`."""
    expired = error.expired if isinstance(error, PushRejected) else []
    payload = failure_report(message, error)
    return [PushFailed.caused_by(message, payload, producer=PRODUCER), *expired]


def _retry_all(errors: Sequence[TransientError], attempted: int) -> TransientError:
    """One error for the runtime: the first cause, and the longest Retry-After asked for."""
    waits = [e.retry_after for e in errors if e.retry_after is not None]
    first = errors[0]
    return TransientError(
        f"{len(errors)} of {attempted} pushes must be retried: {first}",
        reason=first.reason,
        retry_after=max(waits) if waits else None,
    )


def _push_sent(
    message: PushSource, status: Literal["sent", "skipped"], *, delivered: int
) -> PushSent:
    payload = PushSentPayload(**outcome_fields(message), status=status, delivered=delivered)
    return PushSent.caused_by(message, payload, producer=PRODUCER)


def _expired(
    message: PushSource, user_id: UUID, subscription: UserDevice, error: SubscriptionGone
) -> PushSubscriptionExpired:
    payload = SubscriptionExpiredPayload(
        user_id=user_id,
        subscription_id=subscription.target.subscription_id,
        endpoint=subscription.target.endpoint,
        status_code=error.status_code,
        seen_at=datetime.now(UTC),
    )
    return PushSubscriptionExpired.caused_by(message, payload, producer=PRODUCER)
