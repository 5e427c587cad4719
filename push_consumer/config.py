"""Settings of the push consumer."""

from __future__ import annotations

from pydantic import Field, field_validator

from push_consumer.vapid import check_subject, load_private_key
from shared.production import published_vapid_key
from shared.settings import ServiceSettings

HOW_TO_MAKE_A_KEY = "generate one with `make vapid-keys` (python -m push_consumer.keys)"


class Settings(ServiceSettings):
    amqp_url: str = "amqp://push:push@127.0.0.1:5672/rsvp"
    metrics_port: int | None = Field(default=9104, ge=0, le=65535)

    #: Base64url (raw) or PEM EC P-256 private key; `make vapid-keys` makes one.
    #: Unset outside prod, each start uses a throw-away key (and says so).
    vapid_private_key: str | None = None
    #: Contact for push services: a mailto: or https: URL (RFC 8292).
    vapid_subject: str = "mailto:ops@rsvp.localhost"
    #: Seconds one push may take in all: connecting, sending, reading the answer.
    push_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: How long a push service keeps a push for an offline device (the TTL header).
    push_ttl_s: int = Field(default=24 * 3600, ge=0, le=28 * 24 * 3600)
    #: HTTP connections to push services kept open and reused, in all.
    push_max_connections: int = Field(default=32, ge=1, le=1_000)
    #: Where a notification's click leads: ``<APP_URL>/events/<event id>``.
    app_url: str = "http://localhost:8000"

    #: Messages the broker may push ahead of acks, and handled at once.
    prefetch: int = Field(default=64, ge=1, le=10_000)
    concurrency: int = Field(default=16, ge=1, le=1_000)
    #: How long a message that finds the consumer idle waits for others to share
    #: its inbox round trips, follow-up confirms and acks with (0: not at all).
    inbox_gather_ms: int = Field(default=250, ge=0, le=1_000)

    @field_validator("vapid_private_key")
    @classmethod
    def _key_must_load(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        load_private_key(value)  # ValueError says what is wrong with it
        return value

    @field_validator("vapid_subject")
    @classmethod
    def _subject_must_be_a_contact(cls, value: str) -> str:
        check_subject(value)
        return value

    def production_problems(self) -> list[str | None]:
        key = self.vapid_private_key
        scalar = load_private_key(key).private_numbers().private_value if key else None
        return [*super().production_problems(), published_vapid_key(scalar, HOW_TO_MAKE_A_KEY)]
