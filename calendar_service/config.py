"""Settings of the calendar service (API, outbox relay, follow-up consumer)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from shared.settings import ServiceSettings

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"  # noqa: S105 - refused in prod


class Settings(ServiceSettings):
    amqp_url: str = "amqp://calendar:calendar@127.0.0.1:5672/rsvp"
    port: int = Field(default=8000, ge=1, le=65535)

    jwt_secret: str = Field(default=DEV_JWT_SECRET, min_length=32)
    jwt_ttl_seconds: int = Field(default=3600, ge=60)
    #: Users registering with one of these addresses become admins.
    admin_emails: Annotated[frozenset[str], NoDecode] = frozenset()

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(e.strip().lower() for e in value.split(",") if e.strip())
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.app_env == "prod" and self.jwt_secret == DEV_JWT_SECRET:
            raise ValueError("JWT_SECRET must be set to a real secret when APP_ENV=prod")
        return self
