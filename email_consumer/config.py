"""Settings of the email consumer."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    amqp_url: str = "amqp://email:email@127.0.0.1:5672/rsvp"
    metrics_port: int | None = Field(default=9103, ge=0, le=65535)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "RSVP <no-reply@rsvp.localhost>"
