"""What SQLite needs that PostgreSQL does not: pragmas, a write lock taken up front, a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url


def create_engines(url: str, busy_timeout_ms: int) -> tuple[Engine, Engine]:
    """One engine for the writer, one for readers, on the same file.

    The writer opens every transaction with ``BEGIN IMMEDIATE`` so it holds the file's write
    lock before it reads what it is about to change (two cdrhub processes on one file then
    never interleave a read-decide-write). Readers keep SQLite's deferred ``BEGIN``.
    """
    parsed = make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        raise ValueError(
            "an in-memory SQLite database loses every call on restart; "
            "use a file, e.g. sqlite:///data/cdrhub.db"
        )
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return (
        _engine(url, busy_timeout_ms, "BEGIN IMMEDIATE"),
        _engine(url, busy_timeout_ms, "BEGIN"),
    )


def _engine(url: str, busy_timeout_ms: int, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to issue.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is synced to disk before it returns, so a 200 survives power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


def lock_calls(conn: Connection, call_ids: list[str]) -> None:
    """Nothing to do: ``BEGIN IMMEDIATE`` already holds the whole file's write lock."""


#: How the batch writer binds a timestamp: as epoch milliseconds that SQLite formats itself
#: (in C, not per value in Python), exactly as SQLAlchemy's DateTime stores it on SQLite:
#: ``2023-08-07 01:36:32.000000``. The fixed width keeps text comparisons in time order.
TIME_PARAM = "strftime('%Y-%m-%d %H:%M:%f', ? / 1000.0, 'unixepoch') || '000'"
TIME_FROM_MS = True
