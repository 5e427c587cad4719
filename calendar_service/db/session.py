"""The async engine: one connection pool per process, sized from settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import ServiceSettings


def create_engine(
    settings: ServiceSettings,
    *,
    url: str | None = None,
    application_name: str = "calendar_service",
) -> AsyncEngine:
    """A connection not free within ``DB_POOL_TIMEOUT_S`` is SQLAlchemy's pool
    ``TimeoutError`` (the unit of work's ``Overloaded``: §8, a 503 in the API).

    ``url`` is another server than ``DATABASE_URL``'s (the API's read replica),
    with the same pool size and deadlines.

    Every session gets the statement and lock timeouts of ``settings``
    (``DB_STATEMENT_TIMEOUT_MS``, ``DB_LOCK_TIMEOUT_MS``), so a stuck query or
    a held lock fails a request instead of holding its connection for good.
    """
    return create_async_engine(
        url or settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=True,
        pool_recycle=1800,
        # asyncpg's statement cache makes repeated queries cheap; keep it
        connect_args={
            "server_settings": {"application_name": application_name} | settings.db_server_settings,
            "timeout": settings.db_connect_timeout_s,
        },
    )
