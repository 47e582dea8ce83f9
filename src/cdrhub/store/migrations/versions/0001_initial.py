"""Initial schema: calls, raw_pushes, quarantine.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def _time(name: str) -> list[sa.Column]:
    return [sa.Column(name, _TS), sa.Column(f"{name}_ms", sa.BigInteger)]


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("agent_name", sa.Text),
        sa.Column("agent_nick_name", sa.Text),
        sa.Column("answered", sa.Boolean),
        sa.Column("direction", sa.SmallInteger),
        sa.Column("caller", sa.Text),
        sa.Column("callee", sa.Text),
        *_time("start_time"),
        *_time("ring_time"),
        *_time("in_queue_time"),
        *_time("out_queue_time"),
        *_time("answer_time"),
        *_time("end_time"),
        sa.Column("call_duration", sa.Integer),
        sa.Column("ring_duration", sa.Integer),
        sa.Column("queue_duration", sa.Integer),
        sa.Column("dtmf_keys", sa.Text),
        sa.Column("hangup_by", sa.SmallInteger),
        sa.Column("hangup_code", sa.Integer),
        sa.Column("hangup_reason", sa.Text),
        sa.Column("call_status", sa.Text),
        sa.Column("record_url", sa.Text),
        sa.Column("leave_msg_url", sa.Text),
        sa.Column("order_id", sa.Text),
        sa.Column("other", sa.Text),
        sa.Column("intent", sa.Text),
        sa.Column("task_id", sa.Text),
        sa.Column("total_customer_price", sa.Double),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("last_received_at", _TS, nullable=False),
        sa.Column("delivery_count", sa.Integer, nullable=False),
        sa.Column("version_count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_calls"),
    )
    for columns in (["start_time"], ["caller"], ["callee"]):
        op.create_index(f"ix_calls_{'_'.join(columns)}", "calls", columns)

    op.create_table(
        "raw_pushes",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("delivery_count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_raw_pushes"),
        sa.UniqueConstraint("call_id", "content_hash", name="uq_raw_pushes_call_id_content_hash"),
    )

    op.create_table(
        "quarantine",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("remote_addr", sa.Text),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("body_complete", sa.Boolean, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("call_id", sa.Text),
        sa.Column("replayed_at", _TS),
        sa.Column("replay_result", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_quarantine"),
    )
    op.create_index("ix_quarantine_received_at", "quarantine", ["received_at"])


def downgrade() -> None:
    op.drop_table("quarantine")
    op.drop_table("raw_pushes")
    op.drop_table("calls")
