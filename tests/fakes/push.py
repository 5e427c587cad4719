"""An in-memory subscription store for the push handler's unit tests.

It holds each user's subscriptions and the sent-devices ledger as the
PostgreSQL store does, so a test can give a user devices, let a push fail
on one of them, and see the retry skip the ones the ledger names.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from uuid import UUID

from push_consumer.store import UserDevice
from push_consumer.webpush import PushTarget


def a_device(endpoint: str | None = None) -> PushTarget:
    """A subscription with a random id and a made-up endpoint (never contacted)."""
    subscription_id = uuid.uuid4()
    return PushTarget(
        subscription_id,
        endpoint or f"https://push.example.net/p/{subscription_id.hex}",
        secrets.token_urlsafe(65),
        secrets.token_urlsafe(16),
    )


class MemorySubscriptionStore:
    """In-memory :class:`~push_consumer.store.SubscriptionStore`: subscriptions and ledger."""

    def __init__(self) -> None:
        self.devices: dict[UUID, list[PushTarget]] = {}
        #: (message id, subscription id) pairs the handler recorded as reached
        self.ledger: set[tuple[UUID, UUID]] = set()

    def give(self, user_id: UUID, count: int) -> list[PushTarget]:
        """Subscribe ``count`` new devices for ``user_id``; they are returned in order."""
        targets = [a_device() for _ in range(count)]
        self.devices.setdefault(user_id, []).extend(targets)
        return targets

    async def devices_for(self, user_id: UUID, message_id: UUID) -> list[UserDevice]:
        return [
            UserDevice(target, already_sent=(message_id, target.subscription_id) in self.ledger)
            for target in self.devices.get(user_id, [])
        ]

    async def record_sent_devices(self, message_id: UUID, subscription_ids: Sequence[UUID]) -> None:
        self.ledger.update((message_id, s) for s in subscription_ids)
