"""In-memory doubles of the calendar's unit of work, cache and quotas, for use-case unit tests.

Each fake keeps rows as plain dicts, shaped as the real repository returns
them, and does no more than the use cases ask of it. Rules that PostgreSQL
enforces (capacity at COMMIT, counters) are the integration tests' job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from calendar_service.domain import Answer
from calendar_service.errors import RateLimited
from shared.schemas import Envelope


def _now() -> datetime:
    return datetime.now(UTC)


class FakeUsers:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}

    async def add(self, *, email: str, name: str, password_hash: str, role: str) -> Any:
        if any(row["email"] == email for row in self.rows.values()):
            return None
        row = {"id": uuid.uuid4(), "email": email, "name": name, "role": role}
        self.rows[row["id"]] = {**row, "password_hash": password_hash, "created_at": _now()}
        return row

    async def by_id(self, user_id: uuid.UUID) -> Any:
        return self.rows.get(user_id)


class FakeEvents:
    def __init__(self, users: FakeUsers) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self._users = users

    async def add(self, *, organizer_id: uuid.UUID, **fields: Any) -> Any:
        row = {"id": uuid.uuid4(), "organizer_id": organizer_id, "created_at": _now(), **fields}
        self.rows[row["id"]] = row
        return row

    async def get(self, event_id: uuid.UUID) -> Any:
        return self.rows.get(event_id)

    lock = get

    async def change(self, event_id: uuid.UUID, **fields: Any) -> Any:
        self.rows[event_id].update(fields)
        return self.rows[event_id]

    async def with_organizer(self, event_id: uuid.UUID) -> Any:
        event = self.rows.get(event_id)
        if event is None:
            return None
        organizer = self._users.rows[event["organizer_id"]]
        return {**event, "organizer_name": organizer["name"], "organizer_email": organizer["email"]}


class FakeRsvps:
    def __init__(self, events: FakeEvents) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self._events = events

    async def insert_new(self, *, event_id: uuid.UUID, user_id: uuid.UUID, answer: Answer) -> Any:
        if await self.lock_for_user(event_id, user_id) is not None:
            return None
        row = {
            "id": uuid.uuid4(),
            "event_id": event_id,
            "user_id": user_id,
            "status": answer.status,
            "guests": answer.guests,
            "version": 1,
            "created_at": _now(),
            "updated_at": _now(),
        }
        self.rows[row["id"]] = row
        return dict(row)

    async def lock_for_user(self, event_id: uuid.UUID, user_id: uuid.UUID) -> Any:
        for row in self.rows.values():
            if row["event_id"] == event_id and row["user_id"] == user_id:
                return dict(row)
        return None

    async def change(self, rsvp_id: uuid.UUID, answer: Answer) -> Any:
        row = self.rows[rsvp_id]
        row.update(status=answer.status, guests=answer.guests, version=row["version"] + 1)
        return dict(row)

    async def get(self, rsvp_id: uuid.UUID) -> Any:
        row = self.rows.get(rsvp_id)
        if row is None:
            return None
        return {**row, "organizer_id": self._events.rows[row["event_id"]]["organizer_id"]}

    async def page(self, event_id: uuid.UUID, *, limit: int, **_: Any) -> Sequence[Any]:
        return [dict(r) for r in self.rows.values() if r["event_id"] == event_id][:limit]


class FakeNotificationStatuses:
    def __init__(self) -> None:
        self.status: dict[tuple[uuid.UUID, str], str] = {}

    async def mark_pending(self, rsvp_id: uuid.UUID, version: int, channels: Sequence[str]) -> None:
        for channel in channels:
            self.status[rsvp_id, channel] = "pending"

    async def for_rsvp(self, rsvp_id: uuid.UUID) -> dict[str, str]:
        return {channel: s for (rid, channel), s in self.status.items() if rid == rsvp_id}


class FakeIdempotencyKeys:
    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, str], dict[str, Any]] = {}

    async def claim(self, user_id: uuid.UUID, key: str, fingerprint: str) -> Any:
        if (user_id, key) in self.rows:
            return self.rows[user_id, key]
        self.rows[user_id, key] = {"request_fingerprint": fingerprint}
        return None

    async def store_response(
        self, user_id: uuid.UUID, key: str, status_code: int, body: bytes
    ) -> None:
        self.rows[user_id, key].update(status_code=status_code, response_body=body)


class FakeOutbox:
    def __init__(self) -> None:
        self.messages: list[Envelope[Any]] = []

    async def add(self, *messages: Envelope[Any]) -> None:
        self.messages.extend(messages)

    @property
    def types(self) -> list[str]:
        return [message.type for message in self.messages]


class FakeAnnouncements:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}

    async def add(self, *, event_id: uuid.UUID, author_id: uuid.UUID, **fields: Any) -> Any:
        row = {"id": uuid.uuid4(), "event_id": event_id, "author_id": author_id, **fields}
        self.rows[row["id"]] = row
        return row

    async def get(self, event_id: uuid.UUID, announcement_id: uuid.UUID) -> Any:
        row = self.rows.get(announcement_id)
        return row if row is not None and row["event_id"] == event_id else None

    async def counts(self, announcement_id: uuid.UUID) -> dict[str, dict[str, int]]:
        return {}


class FakeSubscriptions:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}

    async def upsert(self, *, user_id: uuid.UUID, endpoint: str, **keys: str) -> tuple[Any, bool]:
        for row in self.rows.values():
            if row["endpoint"] == endpoint:
                row.update(user_id=user_id, **keys)
                return row, False
        row = {"id": uuid.uuid4(), "user_id": user_id, "endpoint": endpoint, **keys}
        self.rows[row["id"]] = row
        return row, True

    async def remove(self, subscription_id: uuid.UUID, *, user_id: uuid.UUID) -> bool:
        row = self.rows.get(subscription_id)
        if row is None or row["user_id"] != user_id:
            return False
        del self.rows[subscription_id]
        return True


class FakeUnitOfWork:
    """The repositories in memory; ``committed`` says whether the use case committed."""

    def __init__(self) -> None:
        self.users = FakeUsers()
        self.events = FakeEvents(self.users)
        self.rsvps = FakeRsvps(self.events)
        self.notifications = FakeNotificationStatuses()
        self.idempotency = FakeIdempotencyKeys()
        self.outbox = FakeOutbox()
        self.announcements = FakeAnnouncements()
        self.subscriptions = FakeSubscriptions()
        self.committed = False

    async def commit(self) -> None:
        self.committed = True


class FakeEventCache:
    """Records which events' cached reads were invalidated."""

    def __init__(self) -> None:
        self.invalidated: list[uuid.UUID] = []

    async def invalidate(self, event_id: uuid.UUID) -> None:
        self.invalidated.append(event_id)


class FakeQuota:
    """Allows ``allowed`` uses per key, then refuses as the real quota does."""

    def __init__(self, allowed: int = 1_000, *, retry_after_s: int = 60) -> None:
        self.allowed = allowed
        self.retry_after_s = retry_after_s
        self.taken: list[str] = []

    async def take(self, key: str) -> None:
        if self.taken.count(key) >= self.allowed:
            raise RateLimited("used too often", retry_after_s=self.retry_after_s)
        self.taken.append(key)


async def a_user(uow: FakeUnitOfWork, name: str = "Ada", *, role: str = "user") -> Any:
    """A registered user (arrange step)."""
    return await uow.users.add(
        email=f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com",
        name=name,
        password_hash="x",
        role=role,
    )


async def an_event(uow: FakeUnitOfWork, organizer: Any, *, capacity: int | None = None) -> Any:
    """An event organized by ``organizer`` (arrange step)."""
    return await uow.events.add(
        organizer_id=organizer["id"],
        title="Picnic",
        starts_at=datetime(2030, 6, 1, 12, tzinfo=UTC),
        ends_at=None,
        location=None,
        capacity=capacity,
    )
