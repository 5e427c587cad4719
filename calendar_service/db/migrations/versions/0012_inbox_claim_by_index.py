"""inbox batch claim looks each message up by its key

0008's look-up joined the claimed ids to ``consumer_inbox``; on a table
PostgreSQL has not analyzed yet (a new database, minutes after a deploy)
the planner hashed the ids and scanned the whole inbox for every claim, and
the function kept that plan for the life of its connection. Here each id is
a ``LATERAL`` look-up with ``LIMIT 1``, which the planner can only run as a
probe of the primary key, whatever it believes the table's size to be.
Locks first, then the look-up, as before.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 01:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not imported: a migration keeps the SQL of its day.
CLAIM_MANY_FUNCTION = """
CREATE OR REPLACE FUNCTION consumer_inbox_claim_many(
    p_release_consumers text[], p_release_ids uuid[], p_consumers text[], p_ids uuid[]
)
RETURNS TABLE (locked boolean, handled boolean, stored jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_locked boolean[];
BEGIN
    PERFORM pg_advisory_unlock(hashtextextended(r.c || '/' || r.m::text, 0))
    FROM unnest(p_release_consumers, p_release_ids) AS r(c, m);
    SELECT coalesce(array_agg(
        pg_try_advisory_lock(hashtextextended(w.c || '/' || w.m::text, 0)) ORDER BY w.n
    ), '{}') INTO v_locked
    FROM unnest(p_consumers, p_ids) WITH ORDINALITY AS w(c, m, n);
    RETURN QUERY
    SELECT v_locked[w.n::int], i.found IS NOT NULL, i.followups
    FROM unnest(p_consumers, p_ids) WITH ORDINALITY AS w(c, m, n)
    LEFT JOIN LATERAL (
        SELECT true AS found, x.followups FROM consumer_inbox x
        WHERE x.consumer = w.c AND x.message_id = w.m
        LIMIT 1
    ) i ON true
    ORDER BY w.n;
END
$$
"""

# 0008's body, restored on downgrade.
PREVIOUS_CLAIM_MANY_FUNCTION = """
CREATE OR REPLACE FUNCTION consumer_inbox_claim_many(
    p_release_consumers text[], p_release_ids uuid[], p_consumers text[], p_ids uuid[]
)
RETURNS TABLE (locked boolean, handled boolean, stored jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_locked boolean[];
BEGIN
    PERFORM pg_advisory_unlock(hashtextextended(r.c || '/' || r.m::text, 0))
    FROM unnest(p_release_consumers, p_release_ids) AS r(c, m);
    SELECT coalesce(array_agg(
        pg_try_advisory_lock(hashtextextended(w.c || '/' || w.m::text, 0)) ORDER BY w.n
    ), '{}') INTO v_locked
    FROM unnest(p_consumers, p_ids) WITH ORDINALITY AS w(c, m, n);
    RETURN QUERY
    SELECT v_locked[w.n::int], i.message_id IS NOT NULL, i.followups
    FROM unnest(p_consumers, p_ids) WITH ORDINALITY AS w(c, m, n)
    LEFT JOIN consumer_inbox i ON i.consumer = w.c AND i.message_id = w.m
    ORDER BY w.n;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM_MANY_FUNCTION)


def downgrade() -> None:
    op.execute(PREVIOUS_CLAIM_MANY_FUNCTION)
