"""outbox parking: rows the broker keeps refusing step aside

A row the broker refuses (unroutable, nacked because a queue is full, its
exchange missing) is retried after a growing delay (``retry_after``) and,
after ``OUTBOX_MAX_ATTEMPTS`` refusals, parked (``parked_at``, with the last
refusal in ``last_error``). The relay's claim skips both, so a row that can
never be published no longer holds back every later one. The pending index
now leaves parked rows out, so the claim stays index-backed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("last_error", sa.Text(), nullable=True))
    # no migration made it before; a schema built from the models has it
    op.execute("DROP INDEX IF EXISTS ix_outbox_pending")
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL AND parked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_column("outbox", "last_error")
    op.drop_column("outbox", "retry_after")
    op.drop_column("outbox", "parked_at")
