"""dead-letter store: archived dead letters, their failure groups, replays, audit log

Every dead letter the archiver takes from a ``*.dlq`` queue becomes a row of
``dead_letters`` (design §9); the queue is a buffer, the table the record.
``(queue, message_id, failed_at)`` is unique, so a crash between the commit
and the ack stores a redelivered message once. ``dead_letter_groups`` keeps
each failure group's counts, kept by statement triggers (one aggregate per
statement, not per row), so the groups page reads a few hundred rows, not a
million. ``pg_trgm`` backs the free-text search in exception messages.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 22:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not imported: a migration keeps the SQL of its day.
TABLES = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    message_id text,
    type text,
    reason text NOT NULL,
    exception_type text,
    exception_message text,
    attempts integer NOT NULL DEFAULT 0,
    failed_at timestamptz,
    original_exchange text NOT NULL,
    original_routing_key text NOT NULL,
    original_queue text NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}',
    properties jsonb NOT NULL DEFAULT '{}',
    body bytea NOT NULL,
    x_death jsonb,
    group_key text NOT NULL,
    replay_of uuid,
    state text NOT NULL DEFAULT 'dead',
    replay_count integer NOT NULL DEFAULT 0,
    replay_id uuid,
    changed_at timestamptz,
    archived_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_dead_letters_state CHECK (state IN ('dead', 'replayed', 'deleted'))
);
CREATE UNIQUE INDEX uq_dead_letters_queue_message_id_failed_at
    ON dead_letters (queue, message_id, failed_at) NULLS NOT DISTINCT;
CREATE INDEX ix_dead_letters_state_id ON dead_letters (state, id);
CREATE INDEX ix_dead_letters_queue_state_id ON dead_letters (queue, state, id);
CREATE INDEX ix_dead_letters_group_key_state_id ON dead_letters (group_key, state, id);
CREATE INDEX ix_dead_letters_type_id ON dead_letters (type, id);
CREATE INDEX ix_dead_letters_reason_id ON dead_letters (reason, id);
CREATE INDEX ix_dead_letters_exception_type_id ON dead_letters (exception_type, id);
CREATE INDEX ix_dead_letters_failed_at ON dead_letters (failed_at);
CREATE INDEX ix_dead_letters_message_id ON dead_letters (message_id);
CREATE INDEX ix_dead_letters_exception_message_trgm
    ON dead_letters USING gin (exception_message gin_trgm_ops);
CREATE INDEX ix_dead_letters_replay_of_id ON dead_letters (replay_of, id)
    WHERE replay_of IS NOT NULL;
CREATE INDEX ix_dead_letters_settled ON dead_letters (changed_at) WHERE state <> 'dead';

CREATE TABLE dead_letter_groups (
    group_key text PRIMARY KEY,
    queue text NOT NULL,
    type text,
    exception_type text,
    reason text NOT NULL,
    sample_message text,
    dead integer NOT NULL DEFAULT 0,
    total integer NOT NULL DEFAULT 0,
    first_failed_at timestamptz,
    last_failed_at timestamptz
);
CREATE INDEX ix_dead_letter_groups_dead ON dead_letter_groups (dead DESC, group_key);

CREATE TABLE dead_letter_replays (
    id uuid PRIMARY KEY,
    actor text NOT NULL,
    selection jsonb NOT NULL,
    route text NOT NULL,
    rate double precision,
    stop_if_failing boolean NOT NULL,
    state text NOT NULL DEFAULT 'running',
    matched integer NOT NULL,
    replayed integer NOT NULL DEFAULT 0,
    failed_again integer NOT NULL DEFAULT 0,
    stopped_reason text,
    cancel_requested boolean NOT NULL DEFAULT false,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CONSTRAINT ck_dead_letter_replays_state CHECK (state IN ('running', 'done', 'stopped'))
);
CREATE INDEX ix_dead_letter_replays_started_at ON dead_letter_replays (started_at);

CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
"""

# One aggregate per statement over its transition table: an archived batch of
# 500 letters touches each of its groups once. Groups are upserted in key
# order so that two archivers' batches lock them in the same order. A group
# shows the reason and exception message of its latest letter: how it fails now.
GROUP_FUNCTIONS = (
    """
CREATE FUNCTION dead_letter_groups_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dead_letter_groups AS g (group_key, queue, type, exception_type, reason,
        sample_message, dead, total, first_failed_at, last_failed_at)
    SELECT group_key, (array_agg(queue))[1], (array_agg(type))[1],
        (array_agg(exception_type))[1], (array_agg(reason ORDER BY id DESC))[1],
        (array_agg(exception_message ORDER BY id DESC))[1],
        count(*) FILTER (WHERE state = 'dead'), count(*),
        min(coalesce(failed_at, archived_at)), max(coalesce(failed_at, archived_at))
    FROM added GROUP BY group_key ORDER BY group_key
    ON CONFLICT (group_key) DO UPDATE SET
        reason = excluded.reason,
        sample_message = excluded.sample_message,
        dead = g.dead + excluded.dead,
        total = g.total + excluded.total,
        first_failed_at = least(g.first_failed_at, excluded.first_failed_at),
        last_failed_at = greatest(g.last_failed_at, excluded.last_failed_at);
    RETURN NULL;
END
$$
""",
    """
CREATE FUNCTION dead_letter_groups_recount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dead_letter_groups g SET dead = g.dead + change.delta
    FROM (
        SELECT o.group_key,
            sum((n.state = 'dead')::int - (o.state = 'dead')::int) AS delta
        FROM before_rows o JOIN after_rows n ON n.id = o.id
        GROUP BY o.group_key ORDER BY o.group_key
    ) change
    WHERE g.group_key = change.group_key AND change.delta <> 0;
    RETURN NULL;
END
$$
""",
    """
CREATE FUNCTION dead_letter_groups_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE dead_letter_groups g
    SET dead = g.dead - gone.dead, total = g.total - gone.total
    FROM (
        SELECT group_key, count(*) FILTER (WHERE state = 'dead') AS dead, count(*) AS total
        FROM removed GROUP BY group_key ORDER BY group_key
    ) gone
    WHERE g.group_key = gone.group_key;
    DELETE FROM dead_letter_groups WHERE total <= 0;
    RETURN NULL;
END
$$
""",
)
GROUP_TRIGGERS = """
CREATE TRIGGER dead_letters_added AFTER INSERT ON dead_letters
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_groups_add();
CREATE TRIGGER dead_letters_changed AFTER UPDATE ON dead_letters
    REFERENCING OLD TABLE AS before_rows NEW TABLE AS after_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_groups_recount();
CREATE TRIGGER dead_letters_removed AFTER DELETE ON dead_letters
    REFERENCING OLD TABLE AS removed
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_groups_remove();
"""


def _statements(script: str) -> list[str]:
    """One statement per ``execute``: asyncpg prepares each, and a prepared statement is one."""
    return [statement for statement in script.split(";\n") if statement.strip()]


def upgrade() -> None:
    for statement in (*_statements(TABLES), *GROUP_FUNCTIONS, *_statements(GROUP_TRIGGERS)):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS audit_log, dead_letter_replays, dead_letter_groups")
    op.execute("DROP TABLE IF EXISTS dead_letters")
    op.execute("DROP FUNCTION IF EXISTS dead_letter_groups_add()")
    op.execute("DROP FUNCTION IF EXISTS dead_letter_groups_recount()")
    op.execute("DROP FUNCTION IF EXISTS dead_letter_groups_remove()")
