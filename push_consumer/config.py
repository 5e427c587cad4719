"""Settings of the push consumer."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    amqp_url: str = "amqp://push:push@127.0.0.1:5672/rsvp"
    metrics_port: int | None = Field(default=9104, ge=0, le=65535)

    #: Base64url (raw) or PEM EC P-256 private key; `make vapid-keys` makes one.
    vapid_private_key: str | None = None
    #: Contact for push services: a mailto: or https: URL (RFC 8292).
    vapid_subject: str = "mailto:ops@rsvp.localhost"
