"""push subscriptions

``push_subscriptions``: the Web Push subscriptions users register through
``POST /users/me/push-subscriptions`` (one row per endpoint). The push
consumer reads them; only the calendar service writes them.

``push_deliveries``: the push consumer's own record of which subscriptions
a message already reached, so a retry after a partial failure does not
push twice to the same browser.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.Text(), nullable=False),
        sa.Column("auth", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_push_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint", name=op.f("uq_push_subscriptions_endpoint")),
    )
    op.create_index(
        op.f("ix_push_subscriptions_user_id"), "push_subscriptions", ["user_id"], unique=False
    )
    op.create_table(
        "push_deliveries",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("subscription_id", sa.UUID(), nullable=False),
        sa.Column(
            "delivered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint(
            "consumer", "message_id", "subscription_id", name=op.f("pk_push_deliveries")
        ),
    )
    op.create_index(
        op.f("ix_push_deliveries_delivered_at"), "push_deliveries", ["delivered_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_push_deliveries_delivered_at"), table_name="push_deliveries")
    op.drop_table("push_deliveries")
    op.drop_index(op.f("ix_push_subscriptions_user_id"), table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
