"""The envelope every message body is wrapped in (design §5).

An envelope carries identity (``message_id``), meaning (``type`` and
``schema_version``), causality (``correlation_id`` stays the same through a
whole chain, ``causation_id`` names the message that caused this one) and the
typed payload in ``data``. Unknown extra fields are ignored so producers can
add fields without breaking older consumers; a message whose
``schema_version`` is newer than the model knows is refused, because its
meaning may have changed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

PayloadT = TypeVar("PayloadT", bound=BaseModel)


class Payload(BaseModel):
    """Base of every ``data`` model: tolerant of unknown fields, immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel, Generic[PayloadT]):
    """A message on the wire; subclasses fix ``type`` and the payload model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    #: The newest payload version this model understands.
    LATEST_VERSION: ClassVar[int] = 1

    # Identity and time are required on the wire (a body without them must not
    # get a fresh random id, which would defeat deduplication); the
    # constructors `first` and `caused_by` fill them in.
    message_id: UUID = Field(
        description=(
            "Identity of this message. A redelivered or replayed message keeps it, "
            "so consumers deduplicate their side effects on it."
        ),
    )
    type: str
    schema_version: int = Field(
        default=1,
        ge=1,
        description=(
            "Version of this type's payload. A consumer refuses a version newer "
            "than it understands, because the meaning may have changed."
        ),
    )
    occurred_at: AwareDatetime = Field(
        description=(
            "When the fact happened or the command was issued. Must carry a UTC "
            "offset; any other offset is converted to UTC."
        ),
    )
    correlation_id: UUID = Field(
        description=(
            "Same on every message of one chain: the message_id of the chain's "
            "first message (for example the rsvp.created that led to an email.sent)."
        ),
    )
    causation_id: UUID | None = Field(
        default=None,
        description="message_id of the message that caused this one; null on a chain's first.",
    )
    producer: str = Field(
        min_length=1,
        max_length=100,
        description="The service that produced the message (also the AMQP app_id).",
    )
    data: PayloadT = Field(description="The payload, typed by the message type.")

    @field_validator("occurred_at")
    @classmethod
    def _normalise_to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("schema_version")
    @classmethod
    def _refuse_newer_versions(cls, value: int) -> int:
        if value > cls.LATEST_VERSION:
            raise ValueError(
                f"schema_version {value} is newer than this consumer understands "
                f"(up to {cls.LATEST_VERSION})"
            )
        return value

    @classmethod
    def first(
        cls,
        data: PayloadT,
        *,
        producer: str,
        message_id: UUID | None = None,
        correlation_id: UUID | None = None,
    ) -> Self:
        """Start a new chain: the message is its own correlation root.

        ``correlation_id`` may name an outer chain (an HTTP request's id).
        """
        message_id = message_id or uuid4()
        # concrete subclasses give `type` its default; mypy sees only the base
        return cls(  # type: ignore[call-arg]
            message_id=message_id,
            occurred_at=utc_now(),
            correlation_id=correlation_id or message_id,
            producer=producer,
            data=data,
        )

    @classmethod
    def caused_by(
        cls,
        cause: Envelope[Any],
        data: PayloadT,
        *,
        producer: str,
        message_id: UUID | None = None,
    ) -> Self:
        """A message that ``cause`` led to: same correlation, causation = cause."""
        return cls(  # type: ignore[call-arg]
            message_id=message_id or uuid4(),
            occurred_at=utc_now(),
            correlation_id=cause.correlation_id,
            causation_id=cause.message_id,
            producer=producer,
            data=data,
        )
