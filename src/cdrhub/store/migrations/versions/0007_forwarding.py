"""Forwarding: the event outbox, destinations, pending deliveries and attempts (issue 14).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _ID, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
    )
    op.create_index("ix_events_created_at_ms", "events", ["created_at_ms"])
    op.create_table(
        "destinations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("secret", sa.Text),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_secret_until_ms", sa.BigInteger),
        sa.Column("token", sa.Text),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("filter", sa.Text, nullable=False),
        sa.Column("concurrency", sa.Integer, nullable=False),
        sa.Column("rate_per_second", sa.Double),
        sa.Column("timeout_seconds", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.Text),
        sa.Column("cursor_seq", sa.BigInteger, nullable=False),
        sa.Column("created_at_ms", sa.BigInteger, nullable=False),
        sa.Column("last_success_at_ms", sa.BigInteger),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at_ms", sa.BigInteger),
        sa.Column("failing_since_ms", sa.BigInteger),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_until_ms", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_destinations"),
        sa.UniqueConstraint("name", name="uq_destinations_name"),
    )
    op.create_table(
        "forward_pending",
        sa.Column("destination_id", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("event_seq", sa.BigInteger, autoincrement=False, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("last_response", sa.Text),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("destination_id", "event_seq", name="pk_forward_pending"),
    )
    op.create_index(
        "ix_forward_pending_destination_id_state_next_attempt_ms",
        "forward_pending",
        ["destination_id", "state", "next_attempt_ms"],
    )
    op.create_index(
        "ix_forward_pending_destination_id_call_id",
        "forward_pending",
        ["destination_id", "call_id"],
    )
    op.create_table(
        "forward_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("destination_id", sa.BigInteger, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("latency_ms", sa.Double, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("response", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_forward_attempts"),
    )
    op.create_index(
        "ix_forward_attempts_destination_id_at_ms", "forward_attempts", ["destination_id", "at_ms"]
    )


def downgrade() -> None:
    op.drop_table("forward_attempts")
    op.drop_table("forward_pending")
    op.drop_table("destinations")
    op.drop_table("events")
