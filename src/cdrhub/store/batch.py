"""Applying one group-commit batch: decide what each push does, then write it all at once.

This is the hot half of the push path, so the per-row statements are plain SQL with
positional parameters, executed by the driver's ``executemany``. SQLAlchemy's compiled
statements are the right tool everywhere else, but their per-value bind processing cost more
than the database itself here (measured: see BENCHMARKS.md). The SQL is generated from the
same ``Table`` objects, so it cannot drift from the schema.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Table, insert

from cdrhub.store.items import Item, Outcome, Rejected
from cdrhub.store.schema import UTCDateTime, calls, quarantine, raw_pushes


class Statements:
    """The batch's SQL for one database dialect.

    ``time_param`` is the SQL a timestamp is bound with, and ``time_from_ms`` says whether
    it takes the epoch milliseconds (SQLite formats them itself, in C) or the datetime.
    Rows are then built by one C-level ``itemgetter`` call, with no per-value Python work.
    """

    def __init__(self, paramstyle: str, time_param: str, time_from_ms: bool) -> None:
        self.mark = m = "?" if paramstyle == "qmark" else "%s"
        t = time_param
        times = {
            c.name
            for tb in (calls, raw_pushes)
            for c in tb.columns
            if isinstance(c.type, UTCDateTime)
        }

        def mark(column: str) -> str:
            return t if column in times else m

        def source(column: str) -> str:
            return f"{column}_ms" if time_from_ms and column in times else column

        self.call_columns = [c.name for c in calls.columns]
        self.raw_columns = [c.name for c in raw_pushes.columns if c.name != "id"]
        self.content_columns = [
            c for c in self.call_columns if c not in _COUNTERS and c != "call_id"
        ]
        self.insert_call = _insert(calls, self.call_columns, mark)
        self.insert_raw = _insert(raw_pushes, self.raw_columns, mark)
        self.update_content = (
            "UPDATE calls SET "
            + ", ".join(f"{c} = {mark(c)}" for c in self.content_columns)
            + f", delivery_count = delivery_count + {m}, version_count = version_count + {m}"
            + f" WHERE call_id = {m}"
        )
        self.bump_call = (
            f"UPDATE calls SET delivery_count = delivery_count + {m}, last_received_at = {t} "
            f"WHERE call_id = {m}"
        )
        self.bump_raw = (
            f"UPDATE raw_pushes SET delivery_count = delivery_count + {m} "
            f"WHERE call_id = {m} AND content_hash = {m}"
        )
        self.insert_event = (
            f"INSERT INTO events (id, type, call_id, content_hash, created_at_ms) "
            f"VALUES ({m}, {m}, {m}, {m}, {m})"
        )
        self.touch_hours = (
            f"INSERT INTO stat_hours (slot, changes) VALUES ({m}, 1) "
            "ON CONFLICT (slot) DO UPDATE SET changes = stat_hours.changes + 1"
        )
        self.record_progress = (
            f"INSERT INTO journal_applied (journal, applied_offset, updated_at_ms) "
            f"VALUES ({m}, {m}, {m}) ON CONFLICT (journal) DO UPDATE SET "
            "applied_offset = excluded.applied_offset, updated_at_ms = excluded.updated_at_ms"
        )
        self.time_from_ms = time_from_ms
        self.call_row = itemgetter(*[source(c) for c in self.call_columns])
        self.raw_row = itemgetter(*[source(c) for c in self.raw_columns])
        self.content_row = itemgetter(*[source(c) for c in self.content_columns])

    def select_in(self, query: str, count: int) -> str:
        """``query`` with its ``IN ()`` list holding ``count`` parameters."""
        return query.replace("()", "(" + ", ".join([self.mark] * count) + ")")


_CURRENT = "SELECT call_id, content_hash, start_time_ms FROM calls WHERE call_id IN ()"
_VERSIONS = "SELECT call_id, content_hash FROM raw_pushes WHERE call_id IN ()"


def _insert(table: Table, columns: list[str], mark: Callable[[str], str]) -> str:
    marks = ", ".join(mark(c) for c in columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})"


HOUR_MS = 3_600_000


def hour_of(start_ms: int | None) -> int:
    """The ``stat_hours`` slot of a call: its start's hour since the epoch; -1 without a start."""
    return -1 if start_ms is None else start_ms // HOUR_MS


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# Columns an UPDATE of content leaves alone (counters are incremented, not set).
_COUNTERS = ("received_at", "delivery_count", "version_count")


def apply(
    conn: Connection, statements: Statements, items: Sequence[Item], call_ids: list[str]
) -> list[Outcome | int]:
    """Decide what each item does against the rows as they are now, then write it all.

    Items are taken in order, so two pushes of one callId in one batch end exactly as if they
    had been committed one after the other.
    """
    current: dict[str, str] = {}
    starts: dict[str, int | None] = {}
    seen: set[tuple[str, str]] = set()
    if call_ids:
        rows = conn.exec_driver_sql(statements.select_in(_CURRENT, len(call_ids)), tuple(call_ids))
        for call_id, digest, start_ms in rows:
            current[call_id] = digest
            starts[call_id] = start_ms
    if current:
        known = tuple(current)
        rows = conn.exec_driver_sql(statements.select_in(_VERSIONS, len(known)), known)
        seen = {(r[0], r[1]) for r in rows}
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
            # The statistics of the hour the call starts in change, and for a correction
            # that moved the start, those of the hour it left too.
            if cid in starts:
                plan.hours.add(hour_of(starts[cid]))
            plan.hours.add(hour_of(item.record.values["start_time_ms"]))
            current[cid] = digest
            seen.add(key)
            plan.versions[cid] += 1
            received = item.received_at
            received_ms = _ms(received)
            plan.content[cid] = {
                **item.record.values,
                "content_hash": digest,
                "source": item.source,
                "updated_at": received,
                "updated_at_ms": received_ms,
            }
            plan.events.append((event_id(received_ms), f"call.{outcome}", cid, digest, received_ms))
            plan.new_raw[key] = {
                "call_id": cid,
                "content_hash": digest,
                "body": item.body,
                "source": item.source,
                "received_at": received,
                "received_at_ms": received_ms,
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
        self.hours: set[int] = set()
        self.events: list[tuple[str, str, str, str, int]] = []  # the outbox, in item order

    def write(self, conn: Connection, sql: Statements, existing: set[str]) -> None:
        inserts: list[Any] = []
        changes: list[Any] = []
        bumps: list[Any] = []
        for cid, count in self.deliveries.items():
            last = self.last_seen[cid]
            last_ms = _ms(last)
            if cid not in existing:
                content = self.content[cid]
                row = content | {
                    "received_at": content["updated_at"],
                    "received_at_ms": content["updated_at_ms"],
                    "last_received_at": last,
                    "last_received_at_ms": last_ms,
                    "delivery_count": count,
                    "version_count": self.versions[cid],
                }
                inserts.append(sql.call_row(row))
            elif cid in self.content:
                row = self.content[cid] | {"last_received_at": last, "last_received_at_ms": last_ms}
                changes.append((*sql.content_row(row), count, self.versions[cid], cid))
            else:
                bumps.append((count, last_ms if sql.time_from_ms else last, cid))
        raw_rows = []
        for key, raw in self.new_raw.items():
            raw["delivery_count"] = self.raw_deliveries.pop(key)
            raw_rows.append(sql.raw_row(raw))
        _executemany(conn, sql.insert_call, inserts)
        _executemany(conn, sql.update_content, changes)
        _executemany(conn, sql.bump_call, bumps)
        _executemany(conn, sql.insert_raw, raw_rows)
        _executemany(conn, sql.bump_raw, [(n, k[0], k[1]) for k, n in self.raw_deliveries.items()])
        _executemany(conn, sql.insert_event, self.events)
        # Last, and in order: PostgreSQL holds these row locks only for the commit itself, and
        # two batches always take them in the same order.
        _executemany(conn, sql.touch_hours, [(h,) for h in sorted(self.hours)])


def record_progress(conn: Connection, statements: Statements, journal: str, offset: int) -> None:
    """Note, in the batch's transaction, that ``journal`` is applied up to byte ``offset``."""
    now_ms = _ms(datetime.now(UTC))
    conn.exec_driver_sql(statements.record_progress, (journal, offset, now_ms))


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def event_id(ms: int) -> str:
    """A new event id: ``evt_`` and a ULID (48 bits of milliseconds, 80 random bits).

    Ids sort by creation time and are unique without a round trip to the database, so they
    can be written in the batch's one ``executemany``; consumers deduplicate on them.
    """
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = [_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5)]
    return "evt_" + "".join(chars)


def _executemany(conn: Connection, statement: str, rows: list[Any]) -> None:
    if rows:
        conn.exec_driver_sql(statement, rows)


def _insert_quarantine(conn: Connection, item: Any) -> int:
    values = {
        "received_at": item.received_at,
        "source": item.source,
        "path": item.path,
        "remote_addr": item.remote_addr,
        "headers": storable_json(item.headers),
        "body": item.body,
        "body_complete": item.body_complete,
        "status": item.status,
        "reason": item.reason,
        "detail": storable_json(item.detail),
        "call_id": item.call_id,
    }
    return int(conn.execute(insert(quarantine).returning(quarantine.c.id), values).scalar_one())


def storable_json(value: Any) -> str:
    """JSON text of ``value`` that every database stores, readable where it can be.

    JSON escapes control characters itself; a lone surrogate (from a decoded file name or a
    value Python's ``json`` read) is kept as its ``\\u`` escape: the same JSON value.
    """
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value)
    return text
