"""How far each push journal is applied (issue 15: acknowledge from a journal).

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal_applied",
        sa.Column("journal", sa.String(200), nullable=False),
        sa.Column("applied_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("journal", name="pk_journal_applied"),
    )


def downgrade() -> None:
    op.drop_table("journal_applied")
