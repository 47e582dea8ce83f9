"""What PostgreSQL needs that SQLite does not: the driver, and per-callId locks across processes."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url


def create_engines(url: str) -> tuple[Engine, Engine]:
    """A writer engine and a reader engine on one server.

    The writer does not ping before each batch (a round trip per commit, measured at a fifth
    of its time under load): a connection lost with the server is detected by the failing
    batch, which answers 503 and invalidates the pool, so the next batch reconnects. Readers
    (health checks, the API) ping, so they never report a stale connection as an outage.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ValueError(
            "PostgreSQL needs the psycopg driver: pip install 'cdrhub[postgres]'"
        ) from None
    # Plain postgresql:// must work: pick psycopg 3 whatever driver the URL names (or not).
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    connect_args = {"connect_timeout": 5}
    writer = create_engine(parsed, pool_size=1, connect_args=connect_args)
    reader = create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    return writer, reader


_LOCK = text(
    "SELECT pg_advisory_xact_lock(h) FROM "
    "(SELECT DISTINCT hashtextextended(id, 0) AS h FROM unnest(CAST(:ids AS text[])) AS id "
    "ORDER BY h) AS keys"
)


def lock_calls(conn: Connection, call_ids: list[str]) -> None:
    """Serialise writers of the same callId across processes until this transaction ends.

    Several receivers on one database can get the same call at once (NXCC retries); without a
    lock both would see "no such call" and both insert. Locks are taken in hash order, so two
    batches never wait on each other in a cycle.
    """
    conn.execute(_LOCK, {"ids": call_ids})


#: psycopg binds aware datetimes as timestamptz directly.
TIME_PARAM = "%s"
TIME_FROM_MS = False


class _NoLock:
    """PostgreSQL queues writers itself (row and advisory locks)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None


def writer_lock(url: str) -> _NoLock:
    """Nothing to add: see :func:`lock_calls`."""
    return _NoLock()
