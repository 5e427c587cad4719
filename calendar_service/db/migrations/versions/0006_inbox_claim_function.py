"""inbox claim function

``consumer_inbox_claim`` takes a consumer's advisory lock on a message and
then looks the message up, in one round trip but with a snapshot taken
after the lock is held (see ``shared.messaging.inbox``). A single statement
that did both read the inbox from a snapshot taken before its lock, so a
copy could miss a record committed in between and send a second email.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 14:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out, not imported: a migration keeps the SQL of its day.
CLAIM_FUNCTION = """
CREATE OR REPLACE FUNCTION consumer_inbox_claim(p_consumer text, p_message_id uuid)
RETURNS TABLE (locked boolean, handled boolean, stored jsonb)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    locked := pg_try_advisory_lock(hashtextextended(p_consumer || '/' || p_message_id::text, 0));
    SELECT true, i.followups INTO handled, stored
    FROM consumer_inbox i WHERE i.consumer = p_consumer AND i.message_id = p_message_id;
    handled := coalesce(handled, false);
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    op.execute(CLAIM_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS consumer_inbox_claim(text, uuid)")
