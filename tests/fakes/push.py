"""In-memory fakes of the push consumer's adapters: its subscription store and its HTTP poster.

The store holds each user's subscriptions and the sent-devices ledger as the
PostgreSQL store does, so a test can give a user devices, let a push fail
on one of them, and see the retry skip the ones the ledger names. The
poster stands in for the push service's HTTP, for the sender's unit tests.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from push_consumer.push_http import PushAnswer
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


@dataclass(frozen=True)
class Post:
    """One POST a :class:`ScriptedPoster` was given: what would have gone over the wire."""

    endpoint: str
    body: bytes
    headers: Mapping[str, str]


class ScriptedPoster:
    """In-memory :class:`~push_consumer.push_http.Poster`: a push service that answers by script.

    ``answer`` gets each :class:`Post` and returns the service's answer, or
    raises what the HTTP client would (aiohttp's errors, ForbiddenAddress).
    """

    def __init__(self, answer: Callable[[Post], PushAnswer]) -> None:
        self._answer = answer
        self.posts: list[Post] = []

    async def post(self, endpoint: str, body: bytes, headers: Mapping[str, str]) -> PushAnswer:
        post = Post(endpoint, body, dict(headers))
        self.posts.append(post)
        return self._answer(post)

    async def aclose(self) -> None:
        pass
