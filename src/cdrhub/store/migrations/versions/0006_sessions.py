"""Dashboard sessions kept on the server, and sign-in attempt counts shared by workers (issue 6).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dashboard_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_dashboard_sessions"),
    )
    op.create_index("ix_dashboard_sessions_user_id", "dashboard_sessions", ["user_id"])
    op.create_table(
        "sign_in_attempts",
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("window_start_ms", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("key_hash", name="pk_sign_in_attempts"),
    )
    op.create_index("ix_sign_in_attempts_window_start_ms", "sign_in_attempts", ["window_start_ms"])


def downgrade() -> None:
    op.drop_table("sign_in_attempts")
    op.drop_table("dashboard_sessions")
