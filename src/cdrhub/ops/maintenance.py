"""Retention and backup: deleting what is older than the policy, copying SQLite while it runs."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select

from cdrhub.store import Store
from cdrhub.store.batch import hour_of
from cdrhub.store.schema import calls, quarantine, raw_pushes

_CHUNK = 5000  # rows per transaction, so pushes never wait long behind a prune


def parse_age(text: str) -> timedelta:
    """``400d``, ``12w``, ``36h`` (or a bare number of days) as a duration."""
    match = re.fullmatch(r"\s*(\d+)\s*([dwh]?)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not an age; write it like 400d, 12w or 36h")
    number, unit = int(match[1]), match[2] or "d"
    return {
        "d": timedelta(days=number),
        "w": timedelta(weeks=number),
        "h": timedelta(hours=number),
    }[unit]


def prune(store: Store, older_than: timedelta, *, dry_run: bool = False) -> dict[str, int]:
    """Delete calls (with their raw versions) and quarantine entries older than ``older_than``.

    A call's age is its ``startTime`` (when it happened), or when it was received if NXCC sent
    none. Returns the counts deleted (or, with ``dry_run``, that would be).
    """
    cutoff = datetime.now(UTC) - older_than
    old_call = func.coalesce(calls.c.start_time, calls.c.received_at) < cutoff
    counts = {"calls": 0, "raw_versions": 0, "quarantine": 0}
    if dry_run:
        with store.read_engine.connect() as conn:
            old_ids = select(calls.c.call_id).where(old_call)
            counts["calls"] = conn.scalar(select(func.count()).where(old_call)) or 0
            counts["raw_versions"] = (
                conn.scalar(
                    select(func.count())
                    .select_from(raw_pushes)
                    .where(raw_pushes.c.call_id.in_(old_ids))
                )
                or 0
            )
            counts["quarantine"] = (
                conn.scalar(select(func.count()).where(quarantine.c.received_at < cutoff)) or 0
            )
        return counts
    while True:
        with store.writing() as conn:
            found = conn.execute(
                select(calls.c.call_id, calls.c.start_time_ms).where(old_call).limit(_CHUNK)
            ).all()
            if not found:
                break
            batch = [r[0] for r in found]
            # The statistics of those hours change: their snapshots must be rebuilt.
            hours = sorted({hour_of(r[1]) for r in found})
            conn.exec_driver_sql(store.statements.touch_hours, [(h,) for h in hours])
            counts["raw_versions"] += conn.execute(
                delete(raw_pushes).where(raw_pushes.c.call_id.in_(batch))
            ).rowcount
            counts["calls"] += conn.execute(
                delete(calls).where(calls.c.call_id.in_(batch))
            ).rowcount
    while True:
        with store.write_engine.begin() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    select(quarantine.c.id).where(quarantine.c.received_at < cutoff).limit(_CHUNK)
                )
            ]
            if not ids:
                break
            counts["quarantine"] += conn.execute(
                delete(quarantine).where(quarantine.c.id.in_(ids))
            ).rowcount
    return counts


def backup(store: Store, destination: Path) -> int:
    """Copy a SQLite database, consistently, while cdrhub keeps writing; returns its size.

    Uses SQLite's online backup API. PostgreSQL has its own tools (``pg_dump``), which this
    does not try to replace.
    """
    if store.kind != "sqlite":
        raise ValueError(
            "cdrhub backup copies SQLite databases; back up PostgreSQL with its own tools, "
            "e.g. pg_dump -Fc -f cdrhub.dump <database>"
        )
    if destination.exists():
        raise FileExistsError(f"{destination} exists; give a new file name")
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(store.write_engine.url.database or "")
    target = sqlite3.connect(destination)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    return destination.stat().st_size
