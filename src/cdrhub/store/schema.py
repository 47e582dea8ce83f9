"""The database schema: the single ``MetaData`` that Alembic migrations are checked against.

Three tables: ``calls`` (one typed row per callId, the newest content), ``raw_pushes`` (every
distinct body received for a call, byte for byte) and ``quarantine`` (authenticated bodies we
could not accept, kept for an operator to inspect and replay).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL has ``timestamptz``; SQLite has no zone, so values are stored as naive UTC and
    given their zone back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _time(name: str) -> list[Column[Any]]:
    """A call timestamp: UTC timestamp for querying plus the epoch ms exactly as NXCC sent it."""
    return [Column(name, UTCDateTime()), Column(f"{name}_ms", BigInteger)]


calls = Table(
    "calls",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("agent_name", Text),
    Column("agent_nick_name", Text),
    Column("answered", Boolean),
    Column("direction", SmallInteger),
    Column("caller", Text),
    Column("callee", Text),
    *_time("start_time"),
    *_time("ring_time"),
    *_time("in_queue_time"),
    *_time("out_queue_time"),
    *_time("answer_time"),
    *_time("end_time"),
    Column("call_duration", Integer),
    Column("ring_duration", Integer),
    Column("queue_duration", Integer),
    Column("dtmf_keys", Text),
    Column("hangup_by", SmallInteger),
    Column("hangup_code", Integer),
    Column("hangup_reason", Text),
    Column("call_status", Text),
    Column("record_url", Text),
    Column("leave_msg_url", Text),
    Column("order_id", Text),
    Column("other", Text),
    Column("intent", Text),
    Column("task_id", Text),
    Column("total_customer_price", Double),
    # Bookkeeping: where the current content came from and how often it was delivered.
    Column("content_hash", String(32), nullable=False),
    Column("source", String(16), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_received_at", UTCDateTime(), nullable=False),
    Column("delivery_count", Integer, nullable=False),
    Column("version_count", Integer, nullable=False),
    # Few indexes on purpose: every one is written by every push, and each commit must sync
    # the index pages it touched. Time ranges (every query has one) and phone numbers (the
    # lookup a supervisor makes) are indexed; other filters run inside a time range. With
    # the seven indexes we first had, push throughput was about 35% lower (BENCHMARKS.md).
    Index(None, "start_time"),
    Index(None, "caller"),
    Index(None, "callee"),
)

raw_pushes = Table(
    "raw_pushes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("call_id", Text, nullable=False),
    Column("content_hash", String(32), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("source", String(16), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("delivery_count", Integer, nullable=False),
    UniqueConstraint("call_id", "content_hash"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("source", String(16), nullable=False),
    Column("path", Text),
    Column("remote_addr", Text),
    Column("headers", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("body_complete", Boolean, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("call_id", Text),
    Column("replayed_at", UTCDateTime()),
    Column("replay_result", Text),
    Index(None, "received_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    # sha256 of the key: the key itself is shown once, at creation, and never stored.
    Column("key_hash", String(64), nullable=False),
    Column("key_prefix", String(16), nullable=False),
    Column("read_only", Boolean, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    UniqueConstraint("key_hash"),
)

# The statistics' hourly snapshots (cdrhub.rollup). Every write that changes a call's content
# bumps ``changes`` of the hour(s) the call starts in, in the same transaction; a snapshot is
# current while ``built`` equals ``changes``. Slot -1 also holds the calls without a startTime.
stat_hours = Table(
    "stat_hours",
    metadata,
    Column("slot", BigInteger, primary_key=True, autoincrement=False),
    Column("changes", BigInteger, nullable=False),
    Column("built", BigInteger),
    Column("calls", Integer),
    Column("facts", LargeBinary),
)

# Calls that NXCC's query API also returned unchanged (cdrhub.backfill): the pull confirms the
# push, so nothing about the call changes but this mark.
import_marks = Table(
    "import_marks",
    metadata,
    Column("call_id", Text, primary_key=True),
    Column("seen_at", UTCDateTime(), nullable=False),
)

# Where a backfill of a range got to, so an interrupted run resumes instead of starting over.
backfill_checkpoints = Table(
    "backfill_checkpoints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("range_start", BigInteger, nullable=False),  # epoch seconds, inclusive
    Column("range_end", BigInteger, nullable=False),  # epoch seconds, exclusive
    Column("done_until", BigInteger, nullable=False),  # every window before this is stored
    Column("counts", Text, nullable=False),  # JSON: fetched, created, updated, unchanged...
    Column("started_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime()),
    UniqueConstraint("range_start", "range_end"),
)

# People who sign in to the dashboard (cdrhub.users). Passwords are argon2id hashes.
users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name"),
)

# Signed-in dashboard browsers (cdrhub.users): the session cookie carries a random id, and only
# its sha256 is kept here, so a copy of the database opens no session. Signing out deletes the
# row, which ends that session in every server process; ``expires_at`` caps its life however
# often the browser comes back (a wall screen polling all day still signs in again).
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index(None, "user_id"),
)

# Sign-in attempts per key (a name from an address, or an address) in the current window
# (cdrhub.web.throttle). In the database, not in memory, so `--workers N` processes share one
# count; keys are sha256 hashes, so what people typed as a name is not kept.
sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("window_start_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Index(None, "window_start_ms"),
)
