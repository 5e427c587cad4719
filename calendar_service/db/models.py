"""Tables of the calendar service.

Every query the API runs has an index here (named after what it serves).
Per-event counters live on the event row: they make the capacity check one
CHECK constraint and `GET /events/{id}` cheap at tens of millions of RSVPs.
The outbox, the consumer inbox and the push deliveries are the reliability
tables of design §6 (the last two belong to the consumers, not the API).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, typed as such for Core statements."""
    return cast(Table, model.__table__)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False, server_default="user")
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        # emails are stored lower-cased; one account per address
        UniqueConstraint("email"),
        CheckConstraint("role IN ('user', 'admin')", name="role"),
    )


#: Refuses overbooking; the deferred counter trigger makes a COMMIT fail on it.
EVENT_WITHIN_CAPACITY = "ck_events_within_capacity"


class Event(Base):
    """An event, with counters of its RSVPs that no application code writes.

    The counters move in the deferred constraint triggers on `rsvps` (function
    ``move_event_counters``, migration 0002): they run inside COMMIT, so the
    event row is locked only while the server commits, never across a round
    trip to the app, where every RSVP of a popular event would queue on it.
    """

    __tablename__ = "events"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organizer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ends_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    location: Mapped[str | None] = mapped_column(String(300))
    capacity: Mapped[int | None] = mapped_column(Integer)
    #: seats taken by `going` RSVPs: each counts 1 + its guests (kept by the trigger)
    going_seats: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    going_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    maybe_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    declined_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity"),
        CheckConstraint("ends_at IS NULL OR ends_at >= starts_at", name="ends_after_start"),
        CheckConstraint("capacity IS NULL OR going_seats <= capacity", name="within_capacity"),
        # GET /events: keyset over (starts_at, id)
        Index(None, "starts_at", "id"),
        Index(None, "organizer_id"),
    )


class Rsvp(Base):
    __tablename__ = "rsvps"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    guests: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    #: bumped by every change; follow-ups carry it so late reports never regress status
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("event_id", "user_id"),
        CheckConstraint("status IN ('going', 'maybe', 'declined', 'cancelled')", name="status"),
        CheckConstraint("guests >= 0", name="guests"),
        # GET /events/{id}/rsvps[?status=]: keyset over (created_at, id) within an event
        Index(None, "event_id", "created_at", "id"),
        Index(None, "event_id", "status", "created_at", "id"),
        Index(None, "user_id"),
    )


class NotificationStatus(Base):
    """What the consumers reported for an RSVP's notification on each channel."""

    __tablename__ = "delivery_status"

    rsvp_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("rsvps.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    rsvp_version: Mapped[int] = mapped_column(Integer, nullable=False)
    detail: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        CheckConstraint("channel IN ('email', 'push')", name="channel"),
        CheckConstraint("status IN ('pending', 'sent', 'failed', 'skipped')", name="status"),
    )


class PushSubscription(Base):
    """A browser's Web Push subscription (what ``PushManager.subscribe()`` returned).

    An endpoint identifies one browser profile, so it is unique: subscribing
    it again updates the row (and moves it to whoever subscribed last). The
    push consumer reads this table; only the calendar service writes it.
    """

    __tablename__ = "push_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    endpoint: Mapped[str] = mapped_column(Text, nullable=False)
    #: the browser's P-256 public key and auth secret, base64url as the browser gave them
    p256dh: Mapped[str] = mapped_column(Text, nullable=False)
    auth: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        UniqueConstraint("endpoint"),
        # the push consumer's look-up: every subscription of one user
        Index(None, "user_id"),
    )


class IdempotencyKey(Base):
    """The first response to an `Idempotency-Key`, replayed for repeats."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    response_body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index(None, "created_at"),)


class OutboxMessage(Base):
    """A message written with the change that caused it, published by the relay."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    message_type: Mapped[str] = mapped_column(String(64), nullable=False)
    exchange: Mapped[str] = mapped_column(String(255), nullable=False)
    routing_key: Mapped[str] = mapped_column(String(255), nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    headers: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: How many times the broker refused the row (a broker away does not count).
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: Not claimed before this (set after a refusal, growing with ``attempts``).
    retry_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Set after ``OUTBOX_MAX_ATTEMPTS`` refusals: the relay leaves the row to an operator.
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("message_id"),
        # the relay's claim query: unpublished, unparked rows in id order
        Index(
            "ix_outbox_pending",
            "id",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index("ix_outbox_published_at", "published_at"),
    )


class ConsumerInbox(Base):
    """Message ids a consumer has handled, with the follow-ups it published."""

    __tablename__ = "consumer_inbox"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    handled_at: Mapped[datetime] = _now()
    followups: Mapped[Any] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )

    __table_args__ = (Index(None, "handled_at"),)


class Reminder(Base):
    """A reminder the scheduler has sent: one per event, attendee and offset, ever.

    The primary key is what makes a reminder exactly-once: the scheduler
    inserts the row and the reminder's commands in one transaction, and a
    second scheduler (or the same one after a restart) finds the key taken.
    Rows are written when a reminder falls due, never ahead of time, so a
    moved event or a changed answer needs no bookkeeping here.
    """

    __tablename__ = "reminders"

    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    #: how long before the start the reminder is meant to arrive
    offset_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    rsvp_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("rsvps.id", ondelete="CASCADE"), nullable=False
    )
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: the scheduler's clock when it wrote the commands
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (
        CheckConstraint("offset_s > 0", name="offset_positive"),
        # ON DELETE CASCADE from users and rsvps looks rows up by these
        Index(None, "user_id"),
        Index(None, "rsvp_id"),
    )


class ReminderWindow(Base):
    """A window (event, offset) the scheduler has finished, for the event's start then.

    Keyed by the start too: an event moved later opens its windows again, and
    the per-attendee ``reminders`` key still stops a second reminder to anyone
    who already had one. ``superseded``: a shorter window of the same event
    was due as well, so this one was closed without sending.
    """

    __tablename__ = "reminder_windows"

    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), primary_key=True
    )
    offset_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    superseded: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class Announcement(Base):
    """An organizer's message to everyone going, fanned out in batches by the scheduler."""

    __tablename__ = "announcements"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("events.id", ondelete="CASCADE"), nullable=False
    )
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    channels: Mapped[list[str]] = mapped_column(ARRAY(String(8)), nullable=False)
    correlation_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    #: keyset position of the fan-out over the event's going RSVPs (created_at, id)
    cursor_created_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cursor_rsvp_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    recipients: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now()
    fanned_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("cardinality(channels) > 0", name="has_channels"),
        Index(None, "event_id", "created_at"),
        # the scheduler's claim: announcements still fanning out, oldest first
        Index(
            "ix_announcements_fanning_out",
            "created_at",
            postgresql_where=text("fanned_out_at IS NULL"),
        ),
    )


class AnnouncementDelivery(Base):
    """One recipient and channel of an announcement, and what the consumer reported."""

    __tablename__ = "announcement_deliveries"

    announcement_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("announcements.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="queued")
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index(None, "user_id"),
        CheckConstraint("channel IN ('email', 'push')", name="channel"),
        CheckConstraint("status IN ('queued', 'sent', 'failed', 'skipped')", name="status"),
    )


class PushDelivery(Base):
    """The push consumer's own record of each subscription a message reached.

    A message may go to several subscriptions; when one of them fails
    transiently the message is retried, and this table keeps the retry from
    pushing again to the subscriptions that already accepted it. No foreign
    key: a subscription may be deleted while its deliveries are remembered.
    Rows are needed only while a message may still be retried or replayed;
    old ones may be deleted by ``delivered_at``.
    """

    __tablename__ = "push_deliveries"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    delivered_at: Mapped[datetime] = _now()

    __table_args__ = (Index(None, "delivered_at"),)
