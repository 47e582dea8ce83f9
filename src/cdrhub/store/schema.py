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

# Wallboard links (cdrhub.auth.wallboard): a token in the /wall address opens that one
# read-only page. Only the token's sha256 is stored; revoked links stay listed.
wall_links = Table(
    "wall_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("token_prefix", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime()),
    UniqueConstraint("token_hash"),
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

# -- forwarding (cdrhub.forward) ----------------------------------------------------------------

# The outbox: one event per change of a call (``call.created``, ``call.updated``), written by the
# batch apply in the same transaction as the call row, so a stored call always has its event
# and no event exists for a call that was not stored. ``seq`` orders events (a call's versions
# in the order they were stored); ``id`` is what consumers deduplicate on, the same on every
# attempt and replay. The body is the raw version's (``raw_pushes`` by call and content hash).
events = Table(
    "events",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False),
    Column("type", String(32), nullable=False),
    Column("call_id", Text, nullable=False),
    Column("content_hash", String(32), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    UniqueConstraint("id"),
    Index(None, "created_at_ms"),
)

# Where events go (``cdrhub forward add``). ``cursor_seq``: every event up to it was delivered,
# skipped by the destination's filter, or moved to ``forward_pending``. One process at a time
# delivers to a destination: the one whose lease (``lease_owner`` until ``lease_until_ms``)
# is current. Secrets are kept as given, because they must be sent; they are never shown.
destinations = Table(
    "destinations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("format", String(16), nullable=False),
    Column("secret", Text),
    Column("previous_secret", Text),
    Column("previous_secret_until_ms", BigInteger),
    Column("token", Text),
    Column("events", Text, nullable=False),
    Column("filter", Text, nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("rate_per_second", Double),
    Column("timeout_seconds", Double, nullable=False),
    Column("state", String(16), nullable=False),
    Column("paused_reason", Text),
    Column("cursor_seq", BigInteger, nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("last_success_at_ms", BigInteger),
    Column("last_error", Text),
    Column("last_error_at_ms", BigInteger),
    Column("failing_since_ms", BigInteger),
    Column("lease_owner", Text),
    Column("lease_until_ms", BigInteger),
    UniqueConstraint("name"),
)

# Events past a destination's cursor that are not delivered yet: waiting for a retry, waiting
# behind an older version of the same call, or dead (every attempt failed; ``retry`` revives).
forward_pending = Table(
    "forward_pending",
    metadata,
    Column("destination_id", BigInteger, primary_key=True, autoincrement=False),
    Column("event_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("call_id", Text, nullable=False),
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("last_response", Text),
    Column("updated_at_ms", BigInteger, nullable=False),
    Index(None, "destination_id", "state", "next_attempt_ms"),
    Index(None, "destination_id", "call_id"),
)

# Every delivery attempt, kept for ``CDRHUB_FORWARD_ATTEMPTS_KEEP_DAYS``.
forward_attempts = Table(
    "forward_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("destination_id", BigInteger, nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("status", Integer),
    Column("latency_ms", Double, nullable=False),
    Column("error", Text),
    Column("response", Text),
    Index(None, "destination_id", "at_ms"),
)

# Alert rules (issue 16): what to watch, whom to tell, and each rule's state, which lives with
# the rule so that a restart or another receiver on the same database carries on from it.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("condition", Text, nullable=False),
    Column("window_seconds", Double, nullable=False),
    Column("min_calls", Integer, nullable=False),
    Column("direction", String(16)),
    Column("task_id", Text),
    Column("hours", Text),
    Column("language", String(8), nullable=False),
    Column("targets", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("firing_since_ms", BigInteger),
    Column("last_value", Double),
    Column("last_checked_ms", BigInteger),
    Column("last_notified_ms", BigInteger),
    UniqueConstraint("name"),
)

# Every notification sent (or tried): fired, repeated, resolved or a test, per target.
alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rule_id", BigInteger, nullable=False),
    Column("rule_name", Text, nullable=False),
    Column("condition", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("value", Double),
    Column("threshold", Double),
    Column("duration_seconds", Double),
    Column("target", Text, nullable=False),
    Column("delivered", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("answer", Text),
    Index(None, "at_ms"),
    Index(None, "rule_id", "at_ms"),
)

# How far each push journal has been applied (``cdrhub.ingest.journal``): the byte offset after
# the last record whose rows are committed, written in the same transaction as those rows, so
# a restart applies exactly the records after it: none twice, none missed.
journal_applied = Table(
    "journal_applied",
    metadata,
    Column("journal", String(200), primary_key=True),
    Column("applied_offset", BigInteger, nullable=False),
    Column("updated_at_ms", BigInteger, nullable=False),
)
