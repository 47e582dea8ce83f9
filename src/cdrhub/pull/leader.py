"""Which of several cdrhub processes runs a scheduled job: the one that holds its lock.

``serve --workers N`` starts N processes and several receivers can share one PostgreSQL;
each builds the same app, so without this each would run its own scheduled reconcile: N
times the requests to NXCC's rate-limited query API, and a /readyz that shows whichever
worker answered. One lock per database decides instead. It belongs to a process, not to a
run: it goes when the process exits (or its PostgreSQL connection drops), and another
process takes it at its next try.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection of its
  own, held while serving. Advisory locks are per database, as the schedule should be.
- SQLite: an exclusive ``flock`` on a file next to the database (as the writer queue's
  ``-writer.lock``), which the kernel releases when the process ends.
- Where neither exists (SQLite on Windows), every process is the leader, as before.
"""

from __future__ import annotations

import hashlib
import logging
import os

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from cdrhub.store import Store

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cdrhub.leader")  # the name operators filter logs by; kept across moves


def _key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a job name."""
    digest = hashlib.blake2b(f"cdrhub:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Leadership:
    """Whether this process runs the job ``name`` on ``store``'s database.

    :meth:`hold` is called before each run: it takes the lock when it is free and says
    whether this process has it. Thread-compatible, not thread-safe: one scheduler calls it.
    """

    def __init__(self, store: Store, name: str) -> None:
        self._name = name
        self._kind = store.kind
        self._fd: int | None = None
        self._conn: Connection | None = None
        self._engine: Engine | None = None
        self._path = ""
        if self._kind == "postgresql":
            # Its own connection, outside the pools: the writer's pool has one connection,
            # and a pooled connection would go back with the lock still on it.
            self._engine = create_engine(
                store.read_engine.url, poolclass=NullPool, connect_args={"connect_timeout": 5}
            )
        else:
            self._path = f"{make_url(store.url).database or ''}-{name}.lock"

    def hold(self) -> bool:
        """True when this process holds the lock (now taken if it was free)."""
        if self._kind == "postgresql":
            return self._hold_advisory()
        return self._hold_file()

    def _hold_file(self) -> bool:
        if fcntl is None:
            return True
        if self._fd is not None:
            return True
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        log.info("this process runs the scheduled %s (lock %s)", self._name, self._path)
        return True

    def _hold_advisory(self) -> bool:
        assert self._engine is not None
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except DBAPIError:  # the connection, and with it the lock, is gone
                log.warning("lost the %s lock with the database connection", self._name)
                self._drop_connection()
        try:
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:
            log.warning("cannot take the %s lock: %s", self._name, exc.orig)
            return False
        try:
            query = text("SELECT pg_try_advisory_lock(:k)")
            got = bool(conn.execute(query, {"k": _key(self._name)}).scalar_one())
        except DBAPIError as exc:
            log.warning("cannot take the %s lock: %s", self._name, exc.orig)
            got = False
        if got:
            self._conn = conn
            log.info("this process runs the scheduled %s (advisory lock)", self._name)
            return True
        conn.close()
        return False

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except DBAPIError as exc:  # already broken: the lock went with it
                log.debug("closing the %s lock's connection: %s", self._name, exc.orig)
            self._conn = None

    def release(self) -> None:
        """Give the lock up (at shutdown), so another process can take it at once."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._drop_connection()
        if self._engine is not None:
            self._engine.dispose()
