"""Alerts: rules with their firing state, and the history of notifications (issue 16).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("condition", sa.Text, nullable=False),
        sa.Column("window_seconds", sa.Double, nullable=False),
        sa.Column("min_calls", sa.Integer, nullable=False),
        sa.Column("direction", sa.String(16)),
        sa.Column("task_id", sa.Text),
        sa.Column("hours", sa.Text),
        sa.Column("language", sa.String(8), nullable=False),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("firing_since_ms", sa.BigInteger),
        sa.Column("last_value", sa.Double),
        sa.Column("last_checked_ms", sa.BigInteger),
        sa.Column("last_notified_ms", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_alert_rules"),
        sa.UniqueConstraint("name", name="uq_alert_rules_name"),
    )
    op.create_table(
        "alert_history",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("rule_id", sa.BigInteger, nullable=False),
        sa.Column("rule_name", sa.Text, nullable=False),
        sa.Column("condition", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("threshold", sa.Double),
        sa.Column("duration_seconds", sa.Double),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("answer", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_alert_history"),
    )
    op.create_index("ix_alert_history_at_ms", "alert_history", ["at_ms"])
    op.create_index("ix_alert_history_rule_id_at_ms", "alert_history", ["rule_id", "at_ms"])


def downgrade() -> None:
    op.drop_table("alert_history")
    op.drop_table("alert_rules")
