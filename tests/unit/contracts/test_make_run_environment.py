"""`make run` gives each process its own database role and broker settings; no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.run import Process, environment_for, plan

OWNER = "postgresql+asyncpg://postgres:secret@db.local:5433/rsvp"


def _by_name() -> dict[str, Process]:
    return {process.name: process for process in plan(9100, smtp_external=False)}


def test_each_database_process_logs_in_as_its_own_role_on_the_owners_database() -> None:
    processes = _by_name()

    for name in ("api", "relay", "reports", "scheduler", "deadletters", "email", "push"):
        url = environment_for(processes[name], {"DATABASE_URL": OWNER})["DATABASE_URL"]
        role = processes[name].role

        assert url == f"postgresql+asyncpg://{role}:{role}@db.local:5433/rsvp", name


def test_a_process_override_wins_and_tools_keep_the_owners_url() -> None:
    processes = _by_name()
    base = {"DATABASE_URL": OWNER, "RELAY__DATABASE_URL": "postgresql://relay:real@db/rsvp"}

    assert environment_for(processes["relay"], base)["DATABASE_URL"] == (
        "postgresql://relay:real@db/rsvp"
    )
    assert environment_for(processes["mail"], base)["DATABASE_URL"] == OWNER
    assert "RELAY__DATABASE_URL" not in environment_for(processes["api"], base)


def test_without_database_url_in_the_environment_the_roles_use_the_dot_env_or_default_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here: the default local server
    assert environment_for(_by_name()["push"], {})["DATABASE_URL"] == (
        "postgresql://rsvp_push:rsvp_push@127.0.0.1:5432/rsvp"
    )

    (tmp_path / ".env").write_text(f"DATABASE_URL={OWNER}\n")
    assert environment_for(_by_name()["push"], {})["DATABASE_URL"] == (
        "postgresql+asyncpg://rsvp_push:rsvp_push@db.local:5433/rsvp"
    )
