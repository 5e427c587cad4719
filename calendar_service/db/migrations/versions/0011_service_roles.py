"""service roles: one PostgreSQL login per process, with only the grants it needs

The processes stop running as the owner of the schema (or a superuser). Each
gets a role of its own, granted what its SQL touches, so a compromised push
consumer cannot write the calendar's tables, and a relay cannot read users.
Roles are cluster-wide while grants belong to one database: a role is created
only when missing (so several databases on one server, e.g. parallel test
runs, share it without a fight) and granted here, per database. Outside
``APP_ENV=prod`` a new role's password is its name (as the broker's development
accounts); with ``APP_ENV=prod`` it is created with no password, and the
operator sets one (``ALTER ROLE rsvp_api PASSWORD '…'``). An existing role's
password is never touched.

Locking reads (``FOR UPDATE``/``FOR SHARE``) need an UPDATE privilege on the
table; a role that only locks gets UPDATE on the ``id`` column alone. The
grants were checked by running each process's tests as its role (see
tests/integration/test_service_roles.py and the fixtures that use ``as_role``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 01:40:00.000000
"""

from collections.abc import Sequence

from alembic import context, op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEL, INS, UPD, DEL = "SELECT", "INSERT", "UPDATE", "DELETE"
LOCK = "UPDATE (id)"  # what FOR UPDATE / FOR SHARE asks of a role that never writes the row
#: an INSERT of one row returns its new id (SQLAlchemy's implicit RETURNING), which needs
#: SELECT on that column; a role that only writes the outbox reads nothing else of it
NEW_ID = "SELECT (id)"

# Written out, not imported: a migration keeps the grants of its day.
#: role -> table -> privileges; sequences follow the tables a role inserts into.
GRANTS: dict[str, dict[str, tuple[str, ...]]] = {
    # the API: accounts, events, RSVPs (answer_rsvp and its triggers), subscriptions,
    # announcements it stores, and the dead-letter store's admin side (replays, audit)
    "rsvp_api": {
        "users": (SEL, INS, UPD),
        "events": (SEL, INS, UPD),
        "rsvps": (SEL, INS, UPD),
        "delivery_status": (SEL, INS, UPD),
        "outbox": (INS, NEW_ID),
        "idempotency_keys": (SEL, INS, UPD),
        "reminders": (SEL, INS, UPD, DEL),
        "reminder_windows": (SEL, INS, UPD, DEL),
        "announcements": (SEL, INS),
        "announcement_deliveries": (SEL,),
        "push_subscriptions": (SEL, INS, UPD, DEL),
        "dead_letters": (SEL, UPD),
        "dead_letter_groups": (SEL, INS, UPD, DEL),  # kept by the triggers on dead_letters
        "dead_letter_replays": (SEL, INS, UPD),
        "audit_log": (SEL, INS),
        "consumer_inbox": (SEL,),  # a replay watches whether its copies were handled
    },
    # the outbox relay: claims, marks, parks and prunes outbox rows
    "rsvp_relay": {"outbox": (SEL, UPD, DEL)},
    # reminders and announcement fan-out as commands, and retention
    "rsvp_scheduler": {
        "users": (SEL,),
        "events": (SEL, LOCK),
        "rsvps": (SEL, LOCK),
        "reminders": (SEL, INS, UPD),
        "reminder_windows": (SEL, INS, UPD, DEL),
        "announcements": (SEL, UPD),
        "announcement_deliveries": (SEL, INS),
        "outbox": (INS, NEW_ID),
        "idempotency_keys": (SEL, DEL),
        "consumer_inbox": (SEL, DEL),
        "push_deliveries": (SEL, DEL),
    },
    # the delivery-report consumer: statuses, announcement progress, expired subscriptions
    "rsvp_reports": {
        "delivery_status": (SEL, INS, UPD),
        "announcement_deliveries": (SEL, UPD),
        "push_subscriptions": (SEL, DEL),
        "consumer_inbox": (SEL, INS),
    },
    # the dead-letter archiver: stores and prunes dead letters
    "rsvp_archiver": {
        "dead_letters": (SEL, INS, DEL),
        "dead_letter_groups": (SEL, INS, UPD, DEL),
    },
    "rsvp_email": {"consumer_inbox": (SEL, INS)},
    # reads subscriptions (never writes them: expiry is reported to the calendar)
    "rsvp_push": {
        "consumer_inbox": (SEL, INS),
        "push_subscriptions": (SEL,),
        "push_deliveries": (SEL, INS),
    },
}
SEQUENCES = {"outbox": "outbox_id_seq", "audit_log": "audit_log_id_seq"}
SEQUENCES |= {"dead_letters": "dead_letters_id_seq"}

CREATE_ROLE = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {password};
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it at the same moment
END
$$;
"""


def _password_clause(role: str) -> str:
    production = context.config.get_main_option("app_env") == "prod"
    return "PASSWORD NULL" if production else f"PASSWORD '{role}'"


def upgrade() -> None:
    for role, tables in GRANTS.items():
        op.execute(CREATE_ROLE.format(role=role, password=_password_clause(role)))
        op.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        for table, privileges in tables.items():
            op.execute(f"GRANT {', '.join(privileges)} ON {table} TO {role}")
            if INS in privileges and table in SEQUENCES:
                op.execute(f"GRANT USAGE ON SEQUENCE {SEQUENCES[table]} TO {role}")


def downgrade() -> None:
    # the roles stay: other databases on the server may use them
    for role in GRANTS:
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE USAGE ON SCHEMA public FROM {role}")
