"""`python -m calendar_service.migrate`: bring the database schema up to date.

Runs alembic programmatically (no alembic.ini needed in the image), so the
compose migration job, `make migrate` and the tests apply the same revisions.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from calendar_service.config import Settings

MIGRATIONS = Path(__file__).resolve().parent / "db" / "migrations"


def alembic_config(database_url: str, app_env: str = "dev") -> Config:
    """``app_env`` reaches the migrations: with ``prod`` new service roles get no password."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url)
    config.set_main_option("app_env", app_env)
    return config


def upgrade(database_url: str, revision: str = "head", app_env: str = "dev") -> None:
    command.upgrade(alembic_config(database_url, app_env), revision)


async def upgrade_async(database_url: str, revision: str = "head", app_env: str = "dev") -> None:
    """For callers inside an event loop (env.py runs its own loop)."""
    await asyncio.to_thread(upgrade, database_url, revision, app_env)


def main() -> int:
    settings = Settings()
    upgrade(settings.database_url, app_env=settings.app_env)
    print("✓ database schema is up to date", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
