"""inbox batch claim function

``consumer_inbox_claim_many`` releases the advisory locks of a batch of
handled messages and claims a batch of new ones in one round trip, so the
consumer runtime pays one round trip per batch of messages in flight, not
three per message. It keeps 0006's order: locks first, then a look-up whose
snapshot is taken after every lock is held (see ``shared.messaging.inbox``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 22:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
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
    op.execute("DROP FUNCTION IF EXISTS consumer_inbox_claim_many(text[], uuid[], text[], uuid[])")
