"""Applying one group-commit batch: decide what each push does, then write it all at once.

This is the hot half of the push path, so the per-row statements are plain SQL with
positional parameters, executed by the driver's ``executemany``. SQLAlchemy's compiled
statements are the right tool everywhere else, but their per-value bind processing cost more
than the database itself here (measured: see BENCHMARKS.md). The SQL is generated from the
same ``Table`` objects, so it cannot drift from the schema.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, insert, select

from cdrhub.store.schema import UTCDateTime, calls, quarantine, raw_pushes

if TYPE_CHECKING:
    from cdrhub.store import Item, Outcome


class Statements:
    """The batch's SQL for one database dialect, and how it wants timestamps."""

    def __init__(self, paramstyle: str, db_time: Callable[[datetime], Any]) -> None:
        self.mark = "?" if paramstyle == "qmark" else "%s"
        self.db_time = db_time
        self.call_columns = [c.name for c in calls.columns]
        self.raw_columns = [c.name for c in raw_pushes.columns if c.name != "id"]
        self.insert_call = self._insert(calls, self.call_columns)
        self.insert_raw = self._insert(raw_pushes, self.raw_columns)
        content = [c for c in self.call_columns if c not in _COUNTERS and c != "call_id"]
        self.content_columns = content
        m = self.mark
        self.update_content = (
            "UPDATE calls SET "
            + ", ".join(f"{c} = {m}" for c in content)
            + f", delivery_count = delivery_count + {m}, version_count = version_count + {m}"
            + f" WHERE call_id = {m}"
        )
        self.bump_call = (
            f"UPDATE calls SET delivery_count = delivery_count + {m}, last_received_at = {m} "
            f"WHERE call_id = {m}"
        )
        self.bump_raw = (
            f"UPDATE raw_pushes SET delivery_count = delivery_count + {m} "
            f"WHERE call_id = {m} AND content_hash = {m}"
        )
        times = {
            c.name
            for t in (calls, raw_pushes)
            for c in t.columns
            if isinstance(c.type, UTCDateTime)
        }
        # Per column list: a C-speed getter for the values, and where the timestamps sit.
        self._pickers = {
            id(cols): (itemgetter(*cols), [i for i, c in enumerate(cols) if c in times])
            for cols in (self.call_columns, self.raw_columns, self.content_columns)
        }

    def _insert(self, table: Table, columns: list[str]) -> str:
        marks = ", ".join([self.mark] * len(columns))
        return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"

    def row(self, values: dict[str, Any], columns: list[str]) -> tuple[Any, ...]:
        """Positional parameters for ``columns``, timestamps in the database's format."""
        pick, time_positions = self._pickers[id(columns)]
        row = list(pick(values))
        convert = self.db_time
        for i in time_positions:
            if row[i] is not None:
                row[i] = convert(row[i])
        return tuple(row)


# Columns an UPDATE of content leaves alone (counters are incremented, not set).
_COUNTERS = ("received_at", "delivery_count", "version_count")


def apply(
    conn: Connection, statements: Statements, items: Sequence[Item], call_ids: list[str]
) -> list[Outcome | int]:
    """Decide what each item does against the rows as they are now, then write it all.

    Items are taken in order, so two pushes of one callId in one batch end exactly as if they
    had been committed one after the other.
    """
    from cdrhub.store import Rejected

    current: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    if call_ids:
        query = select(calls.c.call_id, calls.c.content_hash).where(calls.c.call_id.in_(call_ids))
        current = {r[0]: r[1] for r in conn.execute(query)}
    if current:
        query = select(raw_pushes.c.call_id, raw_pushes.c.content_hash).where(
            raw_pushes.c.call_id.in_(list(current))
        )
        seen = {(r[0], r[1]) for r in conn.execute(query)}
    existing = set(current)

    plan = _Plan()
    results: list[Outcome | int] = []
    for item in items:
        if isinstance(item, Rejected):
            results.append(_insert_quarantine(conn, item))
            continue
        cid, digest = item.record.call_id, item.record.content_hash
        key = (cid, digest)
        plan.deliveries[cid] += 1
        plan.raw_deliveries[key] += 1
        plan.last_seen[cid] = item.received_at
        outcome: Outcome
        if cid not in current:
            outcome = "created"
        elif current[cid] == digest:
            outcome = "duplicate"
        elif key in seen:
            outcome = "stale"
        else:
            outcome = "updated"
        if outcome in ("created", "updated"):
            current[cid] = digest
            seen.add(key)
            plan.versions[cid] += 1
            plan.content[cid] = {
                **item.record.values,
                "content_hash": digest,
                "source": item.source,
                "updated_at": item.received_at,
            }
            plan.new_raw[key] = {
                "call_id": cid,
                "content_hash": digest,
                "body": item.body,
                "source": item.source,
                "received_at": item.received_at,
            }
        results.append(outcome)
    plan.write(conn, statements, existing)
    return results


class _Plan:
    """What a batch changes, accumulated per call so each row is written once."""

    def __init__(self) -> None:
        self.content: dict[str, dict[str, Any]] = {}  # newest content per call, this batch
        self.deliveries: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.last_seen: dict[str, datetime] = {}
        self.new_raw: dict[tuple[str, str], dict[str, Any]] = {}
        self.raw_deliveries: Counter[tuple[str, str]] = Counter()

    def write(self, conn: Connection, sql: Statements, existing: set[str]) -> None:
        inserts: list[Any] = []
        changes: list[Any] = []
        bumps: list[Any] = []
        for cid, count in self.deliveries.items():
            last = sql.db_time(self.last_seen[cid])
            if cid not in existing:
                row = self.content[cid] | {
                    "received_at": self.content[cid]["updated_at"],
                    "last_received_at": self.last_seen[cid],
                    "delivery_count": count,
                    "version_count": self.versions[cid],
                }
                inserts.append(sql.row(row, sql.call_columns))
            elif cid in self.content:
                row = self.content[cid] | {"last_received_at": self.last_seen[cid]}
                changes.append((*sql.row(row, sql.content_columns), count, self.versions[cid], cid))
            else:
                bumps.append((count, last, cid))
        raw_rows = []
        for key, raw in self.new_raw.items():
            raw["delivery_count"] = self.raw_deliveries.pop(key)
            raw_rows.append(sql.row(raw, sql.raw_columns))
        _executemany(conn, sql.insert_call, inserts)
        _executemany(conn, sql.update_content, changes)
        _executemany(conn, sql.bump_call, bumps)
        _executemany(conn, sql.insert_raw, raw_rows)
        _executemany(conn, sql.bump_raw, [(n, k[0], k[1]) for k, n in self.raw_deliveries.items()])


def _executemany(conn: Connection, statement: str, rows: list[Any]) -> None:
    if rows:
        conn.exec_driver_sql(statement, rows)


def _insert_quarantine(conn: Connection, item: Any) -> int:
    values = {
        "received_at": item.received_at,
        "source": item.source,
        "path": item.path,
        "remote_addr": item.remote_addr,
        "headers": json.dumps(item.headers, ensure_ascii=False),
        "body": item.body,
        "body_complete": item.body_complete,
        "status": item.status,
        "reason": item.reason,
        "detail": json.dumps(item.detail, ensure_ascii=False),
        "call_id": item.call_id,
    }
    return int(conn.execute(insert(quarantine).returning(quarantine.c.id), values).scalar_one())
