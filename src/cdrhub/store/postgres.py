"""What PostgreSQL needs that SQLite does not: the driver, and per-callId locks across processes."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url


def create_engines(url: str) -> tuple[Engine, Engine]:
    """One pooled engine serves the writer and the readers alike."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ValueError(
            "PostgreSQL needs the psycopg driver: pip install 'cdrhub[postgres]'"
        ) from None
    # Plain postgresql:// must work: pick psycopg 3 whatever driver the URL names (or not).
    parsed = make_url(url).set(drivername="postgresql+psycopg")
    engine = create_engine(
        parsed,
        pool_pre_ping=True,  # after a restart of the server, reconnect instead of failing once
        connect_args={"connect_timeout": 5},
    )
    return engine, engine


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
