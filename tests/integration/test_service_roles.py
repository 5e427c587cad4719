"""Each process's PostgreSQL role (migration 0011) may touch its own tables and nothing else.

That each role can do its own work is shown by the process tests: the relay,
scheduler, delivery reports, archiver, both consumers and the API run there as
their roles (``as_role`` in the fixtures), and `make run` (tests/e2e) starts
every process as its role. Here: what a role must not do, on the run's database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.support.services import as_role

pytestmark = pytest.mark.integration

ROLES = (
    "rsvp_api",
    "rsvp_relay",
    "rsvp_scheduler",
    "rsvp_reports",
    "rsvp_archiver",
    "rsvp_email",
    "rsvp_push",
)


def _dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def push_role(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(as_role(_dsn(database_url), "rsvp_push"))
    yield connection
    await connection.close()


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO rsvps (id, event_id, user_id, status) VALUES ($1, $1, $1, 'going')",
        "UPDATE rsvps SET status = 'declined' WHERE id = $1",
        "UPDATE events SET title = 'pwned' WHERE id = $1",
        "DELETE FROM users WHERE id = $1",
        "UPDATE push_subscriptions SET endpoint = 'https://evil.example' WHERE id = $1",
        "DELETE FROM push_subscriptions WHERE id = $1",
        "INSERT INTO outbox (message_id, message_type, exchange, routing_key, body)"
        " VALUES ($1, 'email.send', 'notify.direct', 'email.commands', '')",
    ],
)
async def test_the_push_consumers_role_cannot_write_calendar_tables(
    push_role: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied for table"):
        await push_role.execute(statement, uuid.uuid4())


async def test_the_push_consumers_role_does_its_own_work_on_the_same_connection(
    push_role: asyncpg.Connection,
) -> None:
    message_id, subscription_id = uuid.uuid4(), uuid.uuid4()
    async with push_role.transaction():
        await push_role.fetch("SELECT id, endpoint FROM push_subscriptions LIMIT 1")
        await push_role.execute(
            "INSERT INTO push_deliveries (consumer, message_id, subscription_id)"
            " VALUES ('push', $1, $2)",
            message_id,
            subscription_id,
        )
        await push_role.execute(
            "INSERT INTO consumer_inbox (consumer, message_id) VALUES ('push', $1)", message_id
        )


@pytest.mark.parametrize(
    ("role", "table"),
    [
        ("rsvp_relay", "users"),
        ("rsvp_email", "users"),
        ("rsvp_email", "push_subscriptions"),
        ("rsvp_archiver", "rsvps"),
        ("rsvp_reports", "users"),
        ("rsvp_api", "push_deliveries"),
    ],
)
async def test_a_role_reads_no_table_it_has_no_business_with(
    database_url: str, role: str, table: str
) -> None:
    connection = await asyncpg.connect(as_role(_dsn(database_url), role))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"table {table}"):
            await connection.fetch(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 - fixed names
    finally:
        await connection.close()


async def test_no_service_role_may_administer_the_server(database_url: str) -> None:
    connection = await asyncpg.connect(_dsn(database_url))
    try:
        rows = await connection.fetch(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin"
            " FROM pg_roles WHERE rolname = ANY($1::text[])",
            list(ROLES),
        )
    finally:
        await connection.close()

    assert {row["rolname"] for row in rows} == set(ROLES)
    for row in rows:
        assert row["rolcanlogin"], row["rolname"]
        assert not any(
            row[name] for name in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls")
        ), row["rolname"]
