"""Backfill checkpoints and the "seen by import" mark (issue 8).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "import_marks",
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("seen_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_import_marks"),
    )
    op.create_table(
        "backfill_checkpoints",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("range_start", sa.BigInteger, nullable=False),
        sa.Column("range_end", sa.BigInteger, nullable=False),
        sa.Column("done_until", sa.BigInteger, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS),
        sa.PrimaryKeyConstraint("id", name="pk_backfill_checkpoints"),
        sa.UniqueConstraint(
            "range_start", "range_end", name="uq_backfill_checkpoints_range_start_range_end"
        ),
    )


def downgrade() -> None:
    op.drop_table("backfill_checkpoints")
    op.drop_table("import_marks")
