"""Settings every service shares; each service extends this with its own.

Twelve-factor: everything comes from the environment (or a ``.env`` file),
with defaults that work against the local services of ``make run``. Each
service builds its Settings object once at start-up and passes it down.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.production import development_password, refusal


def with_asyncpg_driver(url: str) -> str:
    """Accept the plain ``postgresql://`` URLs operators write: SQLAlchemy wants the driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    return url


def split_url_list(value: str) -> tuple[str, ...]:
    """The URLs of a comma-separated list, in order (``AMQP_URL`` naming every node of a cluster).

    A comma inside a password is written ``%2C``, as any reserved character in a URL.
    """
    urls = tuple(part.strip() for part in value.split(",") if part.strip())
    if not urls:
        raise ValueError("no URL given")
    return urls


def _url_list_of(schemes: tuple[str, ...], value: str) -> str:
    urls = split_url_list(value)
    for url in urls:
        if urlsplit(url).scheme not in schemes:
            raise ValueError(f"{url.split('@')[-1]!r}: the scheme must be {' or '.join(schemes)}")
    return ",".join(urls)


#: ``DB_POOL_TIMEOUT_S``'s default, for pools built without settings (tests, benchmarks).
DB_POOL_TIMEOUT_S = 1.0


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    app_env: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    #: ``auto``: JSON lines unless stderr is a terminal.
    log_format: Literal["auto", "json", "console"] = "auto"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/rsvp"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    #: Longest one SQL statement may run before PostgreSQL cancels it (0: no limit).
    #: Per statement, not per transaction: a long transaction of short statements is fine.
    db_statement_timeout_ms: int = Field(default=5000, ge=0)
    #: Longest a statement waits for a row or table lock (0: no limit).
    db_lock_timeout_ms: int = Field(default=2000, ge=0)
    #: Longest opening one database connection may take.
    db_connect_timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: Longest any process waits for a free connection of its pool (or a new one to
    #: open in its place). Past it the database counts as busy or away, not as the
    #: work failing: the API answers 503 with Retry-After (design §8: never a 30 s
    #: wait, never a 500), a consumer holds its message, the relay and the archiver
    #: back off.
    db_pool_timeout_s: float = Field(default=DB_POOL_TIMEOUT_S, gt=0, le=30)

    #: One broker URL, or a comma-separated list naming every node of a cluster:
    #: a process connects to the first that answers and moves to the next when it is lost.
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/rsvp"
    #: One management URL, or a comma-separated list (the first that answers is used).
    rabbitmq_management_url: str = "http://ops:ops@127.0.0.1:15672"
    redis_url: str = "redis://127.0.0.1:6379/0"

    #: Port of the small HTTP server with /healthz, /readyz and /metrics that
    #: background processes serve; 0 picks a free port, None uses the default.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url_list(cls, value: str) -> str:
        return _url_list_of(("amqp", "amqps"), value)

    @field_validator("rabbitmq_management_url")
    @classmethod
    def _management_url_list(cls, value: str) -> str:
        return _url_list_of(("http", "https"), value)

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg_driver(cls, value: str) -> str:
        return with_asyncpg_driver(value)

    def production_problems(self) -> list[str | None]:
        """What this process would run with that must not reach production (shared.production).

        A service extends the list with the settings it adds; only what the process uses
        belongs here, so an unused default does not stop it.
        """
        return [
            development_password("DATABASE_URL", self.database_url),
            development_password("AMQP_URL", self.amqp_url, default_user="guest"),
        ]

    @model_validator(mode="after")
    def _refuse_development_values_in_production(self) -> ServiceSettings:
        if self.app_env == "prod" and (message := refusal(self.production_problems())):
            raise ValueError(message)
        return self

    @property
    def db_server_settings(self) -> dict[str, str]:
        """The deadlines every session of this process runs with (asyncpg ``server_settings``)."""
        return {
            "statement_timeout": str(self.db_statement_timeout_ms),
            "lock_timeout": str(self.db_lock_timeout_ms),
        }

    @property
    def asyncpg_dsn(self) -> str:
        """The same database for asyncpg, which wants no driver suffix."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
