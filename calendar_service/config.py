"""Settings of the calendar service (API, outbox relay, follow-up consumer)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from calendar_service.ratelimit import parse_limit
from shared.production import admin_emails_given, development_jwt_secret, development_password
from shared.settings import ServiceSettings, split_url_list, with_asyncpg_driver

DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789"  # noqa: S105 - refused in prod
#: The broker account of the admin API's replays: it may only publish (shared/messaging/topology).
DEAD_LETTER_ADMIN = "dlq-admin"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str) -> int:
    """``"90m"`` -> 5400 seconds; a bare number is seconds."""
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:])
    number = text[:-1] if unit else text
    if not number.isdigit():
        raise ValueError(f"{value!r} is not a duration such as 24h, 90m or 3600")
    return int(number) * (unit or 1)


class Settings(ServiceSettings):
    amqp_url: str = "amqp://calendar:calendar@127.0.0.1:5672/rsvp"
    #: The address the API binds: loopback for a local run; 0.0.0.0 in a container.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: Peers whose X-Forwarded-For the API believes (uvicorn's ``forwarded_allow_ips``):
    #: the load balancer's addresses or networks, comma-separated; ``*`` trusts any
    #: peer (only where nothing but the load balancer can reach the API).
    forwarded_allow_ips: str = "127.0.0.1"
    #: A streaming replica of ``DATABASE_URL`` for the reads that tolerate its lag
    #: (event pages, lists, announcement counts); unset, every read is the primary's.
    database_read_url: str | None = None
    #: How long an Idempotency-Key is remembered ("24h"; units s, m, h, d).
    idempotency_key_retention: int = Field(default=24 * 3600, gt=0)
    #: How long consumers remember handled messages (inbox) and the devices a push
    #: reached: at least as long as a dead letter may be replayed ("30d").
    inbox_retention: int = Field(default=30 * 86400, gt=0)
    #: ``/metrics`` on the public port; false serves it only on ``METRICS_PORT``
    #: (default 9100), a port the load balancer does not forward.
    metrics_public: bool = True
    #: The broker account the admin API replays dead letters with; unset, ``dlq-admin``
    #: (its development password) on ``AMQP_URL``'s broker and vhost. Never ``ops``: the
    #: internet-facing API holds an account that can only publish replays.
    #: A comma-separated list of nodes, as ``AMQP_URL``.
    admin_amqp_url: str | None = None

    #: Requests one API process works on at once; past it 503 with Retry-After at
    #: once (design §8). Its event loop serves them by turns, so the last admitted
    #: waits for the work of all the others: an RSVP costs the API 1.3 to 2.8 ms
    #: of CPU (README, Benchmarks), so 64 are 0.1 to 0.2 s of work with a core to
    #: itself and about a third of a second sharing one, well inside the second.
    #: More would serve no faster, only queue. There is no "unlimited": 0 is refused.
    max_requests_in_flight: int = Field(default=64, ge=1, le=4096)
    #: Broker refusals after which the relay parks an outbox row (issue 14).
    outbox_max_attempts: int = Field(default=10, ge=1)

    jwt_secret: str = Field(default=DEV_JWT_SECRET, min_length=32)
    jwt_ttl_seconds: int = Field(default=3600, ge=60)
    #: Users registering with one of these addresses become admins: dev and test
    #: only (refused with APP_ENV=prod; there `python -m calendar_service.admin grant`).
    admin_emails: Annotated[frozenset[str], NoDecode] = frozenset()

    #: Push subscriptions one user may hold; past it subscribing answers 409.
    push_subscriptions_per_user: int = Field(default=20, ge=1, le=1_000)

    #: Resends of one RSVP's confirmation allowed in a moving window ("3/hour").
    resend_limit: str = "3/hour"
    #: Announcements one event may send in a moving window ("10/hour").
    announcement_limit: str = "10/hour"
    #: Sign-in attempts per account and, separately, per client IP (design §8).
    login_limit: str = "5/minute"
    #: Registrations per client IP.
    register_limit: str = "10/hour"
    #: Requests per client IP without a bearer token.
    rate_limit_anonymous: str = "60/minute"
    #: Requests per signed-in user, and per admin.
    rate_limit_user: str = "600/minute"
    rate_limit_admin: str = "6000/minute"
    #: RSVP answers per user: each sends an email and a push.
    rsvp_change_limit: str = "30/hour"
    #: Password hashes (64 MiB of memory each) computed at once; beyond, 503.
    password_hash_concurrency: int = Field(default=4, ge=1, le=64)
    #: When reminders go out before an event starts ("24h,1h"; units s, m, h, d).
    reminder_offsets: Annotated[tuple[int, ...], NoDecode] = (24 * 3600, 3600)
    #: Attendees an announcement fans out to per transaction.
    announcement_batch_size: int = Field(default=500, ge=1, le=10_000)
    #: Longest the scheduler sleeps without a wake-up (a safety net, not a poll).
    scheduler_max_sleep_s: float = Field(default=60.0, gt=0, le=3600)

    @field_validator(
        "resend_limit",
        "announcement_limit",
        "login_limit",
        "register_limit",
        "rate_limit_anonymous",
        "rate_limit_user",
        "rate_limit_admin",
        "rsvp_change_limit",
    )
    @classmethod
    def _limit_must_parse(cls, value: str) -> str:
        parse_limit(value)
        return value

    @field_validator("database_read_url")
    @classmethod
    def _read_url_uses_asyncpg(cls, value: str | None) -> str | None:
        return with_asyncpg_driver(value) if value else None

    @field_validator("idempotency_key_retention", "inbox_retention", mode="before")
    @classmethod
    def _parse_retention(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("reminder_offsets", mode="before")
    @classmethod
    def _parse_offsets(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(sorted({parse_duration(v) for v in value.split(",") if v.strip()}))
        return value

    @field_validator("reminder_offsets")
    @classmethod
    def _offsets_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v <= 0 for v in value):
            raise ValueError("reminder offsets must be positive durations such as 24h or 90m")
        return value

    @field_validator("admin_emails", mode="before")
    @classmethod
    def _split_emails(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(e.strip().lower() for e in value.split(",") if e.strip())
        return value

    @property
    def dead_letter_amqp_url(self) -> str:
        """``ADMIN_AMQP_URL``, or ``AMQP_URL`` as ``dlq-admin`` (development password)."""
        if self.admin_amqp_url:
            return self.admin_amqp_url
        return with_credentials(self.amqp_url, DEAD_LETTER_ADMIN, DEAD_LETTER_ADMIN)

    def production_problems(self) -> list[str | None]:
        return [
            *super().production_problems(),
            development_jwt_secret(self.jwt_secret, DEV_JWT_SECRET),
            admin_emails_given(self.admin_emails),
        ]


class ApiSettings(Settings):
    """The API process: the calendar's settings plus the broker account of its replays."""

    def production_problems(self) -> list[str | None]:
        account = development_password("ADMIN_AMQP_URL", self.dead_letter_amqp_url)
        return [*super().production_problems(), account]


def with_credentials(url: str, user: str, password: str | None) -> str:
    """``url`` (its brokers, ports and vhost: every node of a list) logging in as ``user``."""
    credentials = quote(unquote(user), safe="")
    if password is not None:
        credentials += ":" + quote(unquote(password), safe="")
    nodes = []
    for node in split_url_list(url):
        parts = urlsplit(node)
        host = parts.hostname or "127.0.0.1"
        netloc = f"{credentials}@{host}" + (f":{parts.port}" if parts.port else "")
        nodes.append(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))
    return ",".join(nodes)
