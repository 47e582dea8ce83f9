"""What SQLite needs that PostgreSQL does not: pragmas, a write lock taken up front, a file."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

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


class WriterLock:
    """Queues the writers of several processes on one file, waking the next one at once.

    SQLite's own busy handler polls with sleeps that grow to 100 ms, so two ``--workers``
    taking turns on the write lock waited far longer than any commit takes (p99 above a
    second, measured). An ``flock`` on a side file is a queue the kernel wakes promptly.
    Where ``fcntl`` does not exist (Windows) only SQLite's handler remains.
    """

    def __init__(self, database: str) -> None:
        self._path = f"{database}-writer.lock"
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if fcntl is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if fcntl is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def writer_lock(url: str) -> WriterLock:
    """The cross-process write queue for the file ``url`` names."""
    return WriterLock(make_url(url).database or "")


#: How the batch writer binds a timestamp: as epoch milliseconds that SQLite formats itself
#: (in C, not per value in Python), exactly as SQLAlchemy's DateTime stores it on SQLite:
#: ``2023-08-07 01:36:32.000000``. The fixed width keeps text comparisons in time order.
TIME_PARAM = "strftime('%Y-%m-%d %H:%M:%f', ? / 1000.0, 'unixepoch') || '000'"
TIME_FROM_MS = True
