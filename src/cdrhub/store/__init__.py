"""Storage of calls, their raw bodies and the quarantine, on SQLite or PostgreSQL.

:meth:`Store.write` is the one way anything is written. It takes a batch (the group commit of
every push waiting at that moment) and stores it in a single transaction, so a caller that gets
its result back knows its push is committed and synced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from sqlalchemy import Connection, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError

from cdrhub.errors import SchemaOutdated, StoreUnavailable
from cdrhub.store import batch, migrate, postgres, sqlite
from cdrhub.store.cache import FactCache
from cdrhub.store.items import Item, Outcome, Push, Rejected, Source
from cdrhub.store.schema import calls, journal_applied, quarantine, raw_pushes

log = logging.getLogger(__name__)

#: The largest id a row can have (the id columns are 64-bit; both databases count from 1).
MAX_ROW_ID = 2**63 - 1


class Store:
    """The database behind cdrhub. Thread-safe; the writer thread and readers share it."""

    def __init__(
        self, url: str, *, sqlite_busy_timeout_ms: int = 5000, fact_cache_bytes: int = 0
    ) -> None:
        self.url = url
        #: Decoded statistics snapshots this process has read (``cdrhub.rollup``); 0 bytes: off.
        self.fact_cache = FactCache(fact_cache_bytes) if fact_cache_bytes > 0 else None
        # Called (in the writing thread) after each committed batch: forwarding wakes on it
        # instead of polling for what this process just stored.
        self.listeners: list[Callable[[], None]] = []
        self._dialect: ModuleType
        if url.startswith("sqlite"):
            self._dialect = sqlite
            self.write_engine, self.read_engine = sqlite.create_engines(url, sqlite_busy_timeout_ms)
        elif url.startswith(("postgresql", "postgres")):
            self._dialect = postgres
            self.write_engine, self.read_engine = postgres.create_engines(
                url.replace("postgres://", "postgresql://", 1)
            )
        else:
            raise ValueError(
                f"unsupported database URL scheme in {url.split(':', 1)[0]!r}: use "
                "sqlite:///path.db or postgresql://user@host:port/db"
            )

        self._writer_lock = self._dialect.writer_lock(url)
        self._statements = batch.Statements(
            self.write_engine.dialect.paramstyle,
            self._dialect.TIME_PARAM,
            self._dialect.TIME_FROM_MS,
        )

    @property
    def statements(self) -> batch.Statements:
        """The driver-level SQL of this database (the hot writes and the hour counters)."""
        return self._statements

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.write_engine.dialect.name

    # -- schema ---------------------------------------------------------------------------

    def upgrade(self) -> tuple[str | None, str]:
        """Apply pending migrations; returns (revision before, revision now)."""
        return migrate.upgrade(self.write_engine)

    def schema_status(self) -> tuple[str | None, str]:
        """(revision of the database, revision this cdrhub needs)."""
        return migrate.current_revision(self.read_engine), migrate.head_revision()

    def require_current_schema(self) -> None:
        """Raise :class:`SchemaOutdated` with the command that fixes it."""
        current, head = self.schema_status()
        if current != head:
            state = "has no cdrhub tables yet" if current is None else f"is at {current}"
            raise SchemaOutdated(
                f"the database schema {state}; this cdrhub needs {head}. "
                "Run `cdrhub db upgrade` (or set CDRHUB_AUTO_MIGRATE=true)."
            )

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` if the database cannot be reached."""
        try:
            with self.read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise StoreUnavailable(describe_database_error(exc)) from exc

    # -- writing --------------------------------------------------------------------------

    def write(
        self, items: Sequence[Item], *, progress: tuple[str, int] | None = None
    ) -> list[Outcome | int]:
        """Store a batch in one transaction; one result per item, in order.

        ``progress`` (a journal's name, the byte offset after the batch's last record) is
        recorded in the same transaction: the journal applier's restart point is exactly as
        far as the rows committed, never further, never behind.

        A push's result is its :data:`Outcome`; a rejected body's is its quarantine id.
        Items are applied in order, so two pushes of one callId in one batch behave exactly
        as if they had been committed one after the other. Raises
        :class:`StoreUnavailable` when the database cannot be written (down, locked).
        """
        call_ids = sorted({i.record.call_id for i in items if isinstance(i, Push)})
        for attempt in (1, 2):
            try:
                with self._writer_lock, self.write_engine.begin() as conn:
                    if call_ids:
                        self._dialect.lock_calls(conn, call_ids)
                    results = batch.apply(conn, self._statements, items, call_ids)
                    if progress is not None:
                        batch.record_progress(conn, self._statements, *progress)
                for listener in self.listeners:
                    listener()
                return results
            except OperationalError as exc:
                # A connection the server dropped while idle (a restart) fails once and is
                # replaced: try again at once rather than answer 503. Storing is idempotent,
                # so a batch whose commit was in doubt is safe to repeat.
                if attempt == 1 and exc.connection_invalidated:
                    log.warning(
                        "database connection lost; reconnecting: %s", describe_database_error(exc)
                    )
                    continue
                if refused_for_its_data(exc):
                    raise  # not an outage: the writer stores the others and keeps this one
                raise StoreUnavailable(describe_database_error(exc)) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction outside the push path, queued with the batch writer."""
        with self._writer_lock, self.write_engine.begin() as conn:
            yield conn

    def save(self, push: Push) -> Outcome:
        """Store one push (the CLI's import and replay path)."""
        result = self.write([push])[0]
        assert isinstance(result, str)
        return result

    def quarantine(self, rejected: Rejected) -> int:
        """Keep one refused body; returns its quarantine id."""
        result = self.write([rejected])[0]
        assert isinstance(result, int)
        return result

    def journal_offsets(self) -> dict[str, int]:
        """How far each push journal is applied: name -> byte offset (see ``write``)."""
        query = select(journal_applied.c.journal, journal_applied.c.applied_offset)
        try:
            with self.read_engine.connect() as conn:
                return {name: int(offset) for name, offset in conn.execute(query)}
        except DBAPIError as exc:
            raise StoreUnavailable(describe_database_error(exc)) from exc

    def forget_journal(self, name: str) -> None:
        """Drop a journal's offset once its file is applied in full and removed."""
        try:
            with self._writer_lock, self.write_engine.begin() as conn:
                conn.execute(delete(journal_applied).where(journal_applied.c.journal == name))
        except DBAPIError as exc:
            raise StoreUnavailable(describe_database_error(exc)) from exc

    # -- reading --------------------------------------------------------------------------

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The stored row of a call, or None."""
        with self.read_engine.connect() as conn:
            row = conn.execute(select(calls).where(calls.c.call_id == call_id)).mappings().first()
        return dict(row) if row else None

    def raw_versions(self, call_id: str) -> list[dict[str, Any]]:
        """Every distinct body received for a call, oldest first."""
        query = select(raw_pushes).where(raw_pushes.c.call_id == call_id).order_by(raw_pushes.c.id)
        with self.read_engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def count_calls(self) -> int:
        """How many calls are stored."""
        with self.read_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(calls)).scalar_one())

    def quarantined(
        self, *, limit: int = 50, include_replayed: bool = False
    ) -> list[dict[str, Any]]:
        """Quarantined bodies, newest first (``limit`` beyond what the table can hold is all)."""
        limit = max(0, min(limit, MAX_ROW_ID))  # the drivers bind 64-bit integers at most
        query = select(quarantine).order_by(quarantine.c.id.desc()).limit(limit)
        if not include_replayed:
            query = query.where(quarantine.c.replayed_at.is_(None))
        with self.read_engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def quarantine_entry(self, entry_id: int) -> dict[str, Any] | None:
        """One quarantined body with everything kept about it; None when there is none.

        An id no 64-bit key can hold (``2**70`` from a URL) has no entry: it is answered
        here, as the drivers cannot even bind it (SQLite raises OverflowError, PostgreSQL
        refuses the comparison), which would otherwise reach the caller as a 500.
        """
        if not 1 <= entry_id <= MAX_ROW_ID:
            return None
        with self.read_engine.connect() as conn:
            row = (
                conn.execute(select(quarantine).where(quarantine.c.id == entry_id))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def mark_replayed(self, entry_id: int, result: str) -> None:
        """Record that a quarantined body was stored after all."""
        with self.write_engine.begin() as conn:
            conn.execute(
                update(quarantine)
                .where(quarantine.c.id == entry_id)
                .values(replayed_at=datetime.now(UTC), replay_result=result)
            )

    def close(self) -> None:
        """Release every connection."""
        self._writer_lock.close()
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


#: PostgreSQL error classes about the data written, not the database: data exception (22),
#: integrity violation (23), program limit exceeded (54: an index entry too big, too many
#: columns). psycopg raises the last as an ``OperationalError``, the class of outages.
_DATA_SQLSTATE_CLASSES = ("22", "23", "54")


def refused_for_its_data(exc: DBAPIError) -> bool:
    """Whether the database refused what a batch holds, rather than being away or locked.

    Retrying such a batch fails the same way forever, so it must not be spooled as an outage:
    a spooled item the database refuses would hold every later push behind it.
    """
    state = getattr(exc.orig, "sqlstate", None)
    return isinstance(state, str) and state[:2] in _DATA_SQLSTATE_CLASSES


def describe_database_error(exc: DBAPIError) -> str:
    """A one-line reason from a driver error, without the SQL or its parameters.

    For what reaches a person (the CLI's errors): SQLAlchemy's own message quotes the
    statement and its bound values, several lines of them.
    """
    message = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return f"database unavailable: {message}"


def open_store(url: str, *, sqlite_busy_timeout_ms: int = 5000, fact_cache_bytes: int = 0) -> Store:
    """Open the database a URL names (nothing is created until :meth:`Store.upgrade`)."""
    return Store(
        url, sqlite_busy_timeout_ms=sqlite_busy_timeout_ms, fact_cache_bytes=fact_cache_bytes
    )


__all__ = [
    "Item",
    "Outcome",
    "Push",
    "Rejected",
    "SchemaOutdated",
    "Source",
    "Store",
    "describe_database_error",
    "refused_for_its_data",
    "open_store",
]
