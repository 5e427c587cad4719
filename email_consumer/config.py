"""Settings of the email consumer."""

from __future__ import annotations

from pydantic import Field

from shared.production import smtp_login_without_tls
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    amqp_url: str = "amqp://email:email@127.0.0.1:5672/rsvp"
    metrics_port: int | None = Field(default=9103, ge=0, le=65535)

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    #: Longest one SMTP command (connect, MAIL, RCPT, DATA ...) may wait for the server.
    smtp_timeout_s: float = Field(default=10.0, gt=0, le=300)
    mail_from: str = "RSVP <no-reply@rsvp.localhost>"
    #: SMTP connections kept open and reused; sends run concurrently up to this.
    smtp_pool_size: int = Field(default=4, ge=1, le=64)

    #: Messages the broker may push ahead of acks, and handled at once.
    prefetch: int = Field(default=64, ge=1, le=10_000)
    concurrency: int = Field(default=16, ge=1, le=1_000)
    #: How long a message that finds the consumer idle waits for others to share
    #: its inbox round trips, follow-up confirms and acks with (0: not at all).
    inbox_gather_ms: int = Field(default=250, ge=0, le=1_000)

    def production_problems(self) -> list[str | None]:
        login = smtp_login_without_tls(self.smtp_username, self.smtp_starttls)
        return [*super().production_problems(), login]
