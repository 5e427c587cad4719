"""The async engine: one connection pool per process, sized from settings."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import ServiceSettings


def create_engine(settings: ServiceSettings, *, pool_timeout_s: float = 30.0) -> AsyncEngine:
    """``pool_timeout_s`` bounds the wait for a connection (the API's is short: §8)."""
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=pool_timeout_s,
        pool_pre_ping=True,
        pool_recycle=1800,
        # asyncpg's statement cache makes repeated queries cheap; keep it
        connect_args={"server_settings": {"application_name": "calendar_service"}},
    )
