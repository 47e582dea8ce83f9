"""Hourly snapshots of call facts, so statistics over a million calls read kilobytes, not rows.

Every write that changes a call's content bumps the ``changes`` counter of the hour the call
starts in (and, for a correction that moved the start, of the hour it left), in the same
transaction as the call itself (``store/batch.py``). A snapshot (``stat_hours.facts``: the
hour's calls as :mod:`cdrhub.columns`) is current while ``built`` equals ``changes``.

Readers take the snapshots and the counters in one database snapshot, and rebuild any hour
whose snapshot is missing or behind from the calls in that same snapshot, so a statistic is
always exact: the same numbers as a scan of the calls table, corrected re-pushes included.
Rebuilt hours are saved for the next reader; the server also rebuilds changed hours in the
background, so the hour being written right now is the only one a reader usually builds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, and_, bindparam, func, or_, select, update
from sqlalchemy.exc import DBAPIError

from cdrhub.reports import layout
from cdrhub.store import Store
from cdrhub.store.batch import HOUR_MS, hour_of
from cdrhub.store.schema import calls, stat_hours

if TYPE_CHECKING:
    from cdrhub.reports.columns import Facts

log = logging.getLogger("cdrhub.rollup")  # the name operators filter logs by; kept across moves

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Stale hours the background refresh rebuilds in one read snapshot.
_CHUNK = 96
#: Built snapshots the background refresh holds before it saves them, in bytes: a write
#: transaction per hour would cost the batch writer a commit (and an fsync) per hour.
_SAVE_BYTES = 2**20


def load(
    store: Store, start_ms: int | None, end_ms: int | None, text: Iterable[str] = layout.TEXT
) -> Facts:
    """The facts of every call whose start hour overlaps ``[start_ms, end_ms)`` (open if None).

    Callers still filter by the exact start time: hours are the unit of storage, not of the
    selection. Without a start bound, calls with no startTime are included. Only the
    ``text`` attributes named are kept (see :func:`columns.concat`). Hours this process
    already decoded at the same ``changes`` counter come from ``store.fact_cache``.
    """
    # Here, not at import: the server's background refresh imports this module and needs no
    # NumPy (15 MB), which a reader loads with its first statistic.
    from cdrhub.reports import columns

    # Without a start bound every hour counts: -1 (no start) and those before 1970 too.
    in_range = [] if start_ms is None else [stat_hours.c.slot >= hour_of(start_ms)]
    high = None if end_ms is None else hour_of(end_ms - 1)
    if high is not None:
        in_range.append(stat_hours.c.slot <= high)
    cache = store.fact_cache
    parts: dict[int, Facts] = {}
    built: dict[int, tuple[int, Facts]] = {}
    with _snapshot(store) as conn:
        counters = conn.execute(
            select(stat_hours.c.slot, stat_hours.c.changes, stat_hours.c.built).where(*in_range)
        ).all()
        stale: dict[int, int] = {}
        current: dict[int, int] = {}
        for slot, changes, done in counters:
            hit = cache.get(slot, changes) if cache is not None else None
            if hit is not None:
                parts[slot] = hit
            elif done == changes:
                current[slot] = changes
            else:
                stale[slot] = changes
        for slot, data in _snapshots(conn, current, in_range):
            parts[slot] = facts = columns.from_bytes(data)
            if cache is not None:
                cache.put(slot, current[slot], facts)
        stale.update({slot: n for slot, n in current.items() if slot not in parts})
        for slot, facts in _build(conn, sorted(stale)):
            parts[slot] = facts
            built[slot] = (stale[slot], facts)
            if cache is not None:
                cache.put(slot, stale[slot], facts)
    _save(store, built)
    return columns.concat([parts[slot] for slot in sorted(parts)], text)


def _snapshots(
    conn: Connection, wanted: dict[int, int], in_range: list[Any]
) -> Iterator[tuple[int, bytes]]:
    """The saved snapshots of the ``wanted`` hours (built at the counter given for each).

    A snapshot whose counter moved since the counters were read cannot appear: both reads are
    in one database snapshot. Few hours are asked for by name, many by the whole range.
    """
    if not wanted:
        return
    query = select(stat_hours.c.slot, stat_hours.c.facts).where(stat_hours.c.facts.is_not(None))
    if len(wanted) <= _BY_NAME:
        query = query.where(stat_hours.c.slot.in_(sorted(wanted)))
    else:
        query = query.where(*in_range)
    for slot, data in _rows(conn, query):
        if slot in wanted:
            yield slot, data


#: Up to this many hours are asked for by name (``slot IN (...)``), more by the range.
_BY_NAME = 200


def _rows(conn: Connection, query: Select[Any]) -> Iterable[Sequence[Any]]:
    """The snapshot rows; on PostgreSQL in binary, not as hex text twice their size to decode."""
    if conn.dialect.name != "postgresql":
        return conn.execute(query)
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    cursor = conn.connection.driver_connection.cursor(binary=True)  # type: ignore[union-attr]
    cursor.execute(str(compiled), compiled.params)
    return cursor


def refresh(
    store: Store, *, limit: int | None = None, progress: Callable[[int], None] | None = None
) -> int:
    """Rebuild and save stale hours (all, or the ``limit`` oldest); returns how many.

    The hour being written now is left alone: it changes with every batch, and readers build
    it themselves for little cost.
    """
    current = hour_of(int(datetime.now(UTC).timestamp() * 1000))
    query = (
        select(stat_hours.c.slot, stat_hours.c.changes)
        .where(or_(stat_hours.c.built.is_(None), stat_hours.c.built != stat_hours.c.changes))
        .where(stat_hours.c.slot != current)
        .order_by(stat_hours.c.slot)
    )
    if limit is not None:
        query = query.limit(limit)
    total = 0
    with _snapshot(store) as conn:
        stale = {slot: changes for slot, changes in conn.execute(query)}
    slots = sorted(stale)
    for i in range(0, len(slots), _CHUNK):
        chunk = slots[i : i + _CHUNK]
        pending: list[dict[str, Any]] = []
        size = 0
        with _snapshot(store) as conn:
            # Counters read again inside the snapshot the facts come from.
            changes = dict(
                conn.execute(
                    select(stat_hours.c.slot, stat_hours.c.changes).where(
                        stat_hours.c.slot.in_(chunk)
                    )
                ).all()
            )
            # Each hour is kept only as its saved form, made from its rows without NumPy
            # (layout.encode), and saved once a megabyte is waiting: what a refresh holds is
            # one hour's calls and that megabyte, however many calls the hours have (holding
            # 24 hours of rows and 96 hours of facts grew the server by about 7 MB per 100,000
            # pushes, BENCHMARKS.md).
            for slot in chunk:
                if slot not in changes:
                    continue
                count, data = layout.encode(_hour_rows(conn, slot))
                pending.append(_row(slot, changes[slot], count, data))
                size += len(data)
                if size >= _SAVE_BYTES:
                    _write(store, pending)
                    total += len(pending)
                    pending, size = [], 0
        _write(store, pending)
        total += len(pending)
        if progress is not None:
            progress(len(chunk))
    return total


def changes_between(store: Store, start_ms: int, end_ms: int) -> tuple[int, int]:
    """``(hours, changes)`` over the hours ``[start_ms, end_ms)`` touches: the sum moves with
    every write that changes a call there, so it tells a reader cheaply whether to look again."""
    hours = stat_hours.c.slot.between(hour_of(start_ms), hour_of(end_ms - 1))
    counted = select(func.count(), func.coalesce(func.sum(stat_hours.c.changes), 0)).where(hours)
    with store.read_engine.connect() as conn:
        slots, changes = conn.execute(counted).one()
    return int(slots), int(changes)


def stale_count(store: Store) -> int:
    """How many hours have no current snapshot."""
    query = select(func.count()).where(
        or_(stat_hours.c.built.is_(None), stat_hours.c.built != stat_hours.c.changes)
    )
    with store.read_engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _snapshot(store: Store) -> _Snapshot:
    return _Snapshot(store)


class _Snapshot:
    """A read transaction that sees one consistent state of the database.

    SQLite readers get that from WAL (a deferred BEGIN); PostgreSQL needs REPEATABLE READ,
    or the counters and the calls could come from different commits.
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> Connection:
        self._conn = self._store.read_engine.connect()
        if self._store.kind == "postgresql":
            self._conn = self._conn.execution_options(isolation_level="REPEATABLE READ")
        self._txn = self._conn.begin()
        return self._conn

    def __exit__(self, *exc: object) -> None:
        try:
            self._txn.rollback()
        finally:
            self._conn.close()


def _build(conn: Connection, slots: list[int]) -> Iterator[tuple[int, Facts]]:
    """Facts of each hour in ``slots``, from the calls, one query per hour.

    An hour at a time, so that a rebuild holds one hour's calls as Python rows, never more:
    a query per run of 24 hours held them all before the first hour became arrays, and the
    process keeps that high-water mark. Per hour, the calls without a start (hour -1) need no
    special ordering either: SQLite sorts them first and PostgreSQL last.
    """
    from cdrhub.reports import columns  # a reader's: see load

    for slot in slots:
        yield slot, columns.from_rows(_hour_rows(conn, slot))


def _hour_rows(conn: Connection, slot: int) -> list[tuple[Any, ...]]:
    """The :data:`layout.SOURCE` rows of the calls that start in hour ``slot``."""
    low, high = slot * HOUR_MS, (slot + 1) * HOUR_MS
    start, end = _moment(low), _moment(high)
    if start is not None and end is not None:
        where = and_(calls.c.start_time >= start, calls.c.start_time < end)
    else:
        # Hours ``datetime`` cannot bound (a start an older version let through in year
        # 9999, or a hand-written one): by the exact ms, which the slot was taken from.
        # A scan, but only ever for such hours.
        where = and_(calls.c.start_time_ms >= low, calls.c.start_time_ms < high)
    if slot == -1:  # calls without a start live in hour -1 (with any from just before 1970)
        where = or_(calls.c.start_time.is_(None), where)
    query = select(*layout.SOURCE).where(where)
    return [tuple(row) for row in conn.execute(query) if hour_of(row[0]) == slot]


def _moment(ms: int) -> datetime | None:
    """The UTC instant, or None where ``datetime`` ends (before year 1, after 9999)."""
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None


def _save(store: Store, built: dict[int, tuple[int, Facts]]) -> None:
    """Keep rebuilt snapshots, each marked with the counter it was built at.

    Saving is an optimisation: if the database refuses (read-only, busy), the answer already
    computed is still right, and the next reader builds the hour again.
    """
    _write(store, [_saved(slot, changes, facts) for slot, (changes, facts) in built.items()])


def _saved(slot: int, changes: int, facts: Facts) -> dict[str, Any]:
    """The ``stat_hours`` values that save ``facts`` as the hour's snapshot at ``changes``."""
    from cdrhub.reports import columns  # a reader's: see load

    return _row(slot, changes, len(facts), columns.to_bytes(facts))


def _row(slot: int, changes: int, count: int, snapshot: bytes) -> dict[str, Any]:
    """The ``stat_hours`` values of an hour's snapshot (bound by :func:`_write`'s insert)."""
    return {"s": slot, "b": changes, "n": count, "f": snapshot}


def _write(store: Store, rows: list[dict[str, Any]]) -> None:
    """Save :func:`_saved` rows in one write transaction; a refusal is logged (see _save)."""
    if not rows:
        return
    save = (
        update(stat_hours)
        .where(stat_hours.c.slot == bindparam("s"))
        .values(built=bindparam("b"), calls=bindparam("n"), facts=bindparam("f"))
    )
    try:
        with store.writing() as conn:
            conn.execute(save, rows)
    except DBAPIError as exc:
        log.warning("could not save statistics snapshots (they will be rebuilt): %s", exc.orig)
