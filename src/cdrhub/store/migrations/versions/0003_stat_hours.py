"""Hourly statistics snapshots, kept in step with the calls (issue 5).

Every hour that already holds calls is marked as changed, so its snapshot is built on first
use (or by the server's background refresh).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stat_hours",
        sa.Column("slot", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("changes", sa.BigInteger, nullable=False),
        sa.Column("built", sa.BigInteger),
        sa.Column("calls", sa.Integer),
        sa.Column("facts", sa.LargeBinary),
        sa.PrimaryKeyConstraint("slot", name="pk_stat_hours"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Snapshots are read whole on every report: stored uncompressed, PostgreSQL hands them
        # over without inflating each one (pglz cost about half of a report's time).
        op.execute("ALTER TABLE stat_hours ALTER COLUMN facts SET STORAGE EXTERNAL")
    # Floor division on both databases (their "/" truncates towards zero); -1 for no start.
    op.execute(
        "INSERT INTO stat_hours (slot, changes) SELECT DISTINCT CASE "
        "WHEN start_time_ms IS NULL THEN -1 "
        "WHEN start_time_ms >= 0 THEN start_time_ms / 3600000 "
        "ELSE (start_time_ms + 1) / 3600000 - 1 END, 1 FROM calls"
    )


def downgrade() -> None:
    op.drop_table("stat_hours")
