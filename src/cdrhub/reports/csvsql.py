"""CSV lines of calls formatted by the database itself, for exports.

A million calls are 46 million cells. Fetching them into Python and formatting them there
(times to ISO 8601, formula prefixes, quoting) took 32 to 53 s for a million calls on the
2-core test machine; the database does the same work in its own C code (PostgreSQL: ``COPY``,
in its own process; SQLite: one ``printf`` per row), 3-4x and 1.8x faster (BENCHMARKS.md).

Every cell follows the rules of :mod:`cdrhub.export`, the same on both databases:

- text is always quoted (``"`` doubled inside), with a ``'`` put before a leading ``= + - @``,
  tab or carriage return so a spreadsheet shows it instead of running it;
- a time is ISO 8601 with ms and the offset of the chosen zone, ``2026-11-24T09:00:00.000+08:00``,
  next to its ``_ms`` column exactly as stored;
- booleans are ``true`` / ``false``; numbers as the database prints them (doubles with 15
  significant digits); a missing value is an empty, unquoted cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, Column, Double, String, func, literal_column, select, type_coerce
from sqlalchemy.engine import Connection

from cdrhub import cdr
from cdrhub.reports import zones
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store
from cdrhub.store.schema import UTCDateTime, calls

#: The columns, in table order (the CSV header).
COLUMNS: tuple[str, ...] = tuple(c.name for c in calls.columns)
#: First characters a spreadsheet reads as a formula (OWASP "CSV injection"), as code points.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Lines = Iterator[tuple[bytes, int]]


def lines(store: Store, where: CallFilter, tz: ZoneInfo, *, batch: int = 5000) -> Lines:
    """``(chunk, rows)``: the CSV lines of every call ``where`` selects, in start-time order.

    Chunks hold about ``batch`` rows each, so memory stays constant whatever the export's size.
    """
    if store.kind == "sqlite":
        return _sqlite(store, where, tz, batch)
    return _postgres(store, where, tz, batch)


def _kind(column: Column[Any]) -> str:
    if isinstance(column.type, UTCDateTime):
        return "time"
    if isinstance(column.type, Boolean):
        return "bool"
    if isinstance(column.type, Double):
        return "double"
    return "text" if column.type.python_type is str else "int"


# -- PostgreSQL: COPY ... TO STDOUT, quoting by the server ----------------------------------------

_PG_TIME = 'YYYY-MM-DD"T"HH24:MI:SS.MSTZH:TZM'


def _postgres(store: Store, where: CallFilter, tz: ZoneInfo, batch: int) -> Lines:
    cells: list[str] = []
    for column in calls.columns:
        name, kind = column.name, _kind(column)
        if kind == "time":  # to_char writes in the session's zone, set below for this export
            cells.append(_pg_time(name))
        elif kind == "text":
            starts = ", ".join(_pg_literal(c) for c in FORMULA_START)
            cells.append(
                f"CASE WHEN left({name}, 1) IN ({starts}) THEN '''' || {name} ELSE {name} END"
            )
        elif kind == "bool":
            cells.append(f"CASE WHEN {name} THEN 'true' WHEN NOT {name} THEN 'false' END")
        else:
            cells.append(name)
    texts = ", ".join(c.name for c in calls.columns if _kind(c) == "text")
    query = (
        select(*(literal_column(c).label(n) for c, n in zip(cells, COLUMNS, strict=True)))
        .select_from(calls)
        .where(*where.conditions())
        .order_by(calls.c.start_time.asc(), calls.c.call_id.asc())
    )
    compiled = query.compile(dialect=store.read_engine.dialect)
    statement = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE ({texts}))"
    with store.read_engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor:
            # Both only for this transaction: the connection goes back to the pool unchanged.
            cursor.execute("SELECT set_config('TimeZone', %s, true)", (tz.key,))
            cursor.execute("SELECT set_config('extra_float_digits', '0', true)")
            with cursor.copy(statement, compiled.params) as copy:
                pending: list[bytes] = []
                for data in copy:  # one row per CopyData message, by the protocol
                    pending.append(bytes(data))
                    if len(pending) >= batch:
                        yield b"".join(pending), len(pending)
                        pending = []
                if pending:
                    yield b"".join(pending), len(pending)
        raw.rollback()


def _pg_time(name: str) -> str:
    """A time cell. Most times take the plain ``to_char``; the rest are checked for the two
    things it gets wrong that Python does not: a local date outside years 1 to 9999 (no
    ``datetime`` holds it, so the cell is empty, as in JSON Lines) and an offset with seconds
    (local mean time, Monrovia until 1972), whose seconds ``TZH:TZM`` would drop."""
    plain = f"to_char({name}, '{_PG_TIME}')"
    offset = f"mod(extract(timezone FROM {name})::int, 60)"
    seconds = f"CASE WHEN {offset} <> 0 THEN ':' || lpad(abs({offset})::text, 2, '0') ELSE '' END"
    return (
        f"CASE WHEN {name} >= '1973-01-01 00:00Z' AND {name} < '9999-12-29 00:00Z' "
        f"THEN {plain} WHEN extract(year FROM {name}) BETWEEN 1 AND 9999 "
        f"THEN {plain} || {seconds} END"
    )


def _pg_literal(text: str) -> str:
    return {"\t": "E'\\t'", "\r": "E'\\r'"}.get(text, f"'{text}'")


# -- SQLite: one printf per row ------------------------------------------------------------------


def _sqlite(store: Store, where: CallFilter, tz: ZoneInfo, batch: int) -> Lines:
    with store.read_engine.connect() as conn:
        window = _window(conn)
        formats = _SqliteTimes(tz, window)
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.create_function("cdrhub_iso_ms", 1, formats.from_ms, deterministic=True)
        raw.create_function("cdrhub_iso_text", 1, formats.from_text, deterministic=True)
        cells = [_sqlite_cell(column, formats) for column in calls.columns]
        line = "printf('" + ",".join(["%s"] * len(cells)) + "\n', " + ", ".join(cells) + ")"
        query = (
            select(literal_column(line))
            .select_from(calls)
            .where(*where.conditions())
            .order_by(calls.c.start_time)
        )
        # sqlite3 steps its cursor lazily: lines straight from it, in batches.
        cursor = conn.execute(query).cursor
        while rows := cursor.fetchmany(batch):
            yield "".join(row[0] for row in rows).encode(), len(rows)


def _window(conn: Connection) -> tuple[int, int]:
    """The instants times are formatted in SQL for: two days around the calls' start times and
    now, within the times cdrhub accepts (:data:`cdr.MIN_TIME_MS` to :data:`cdr.END_TIME_MS`).
    Times outside (a bogus year 2100 endTime; a row an older version stored in year 9999) go
    through Python, exactly but slowly; the window's zone offsets cost time per day it spans."""
    # Two queries: SQLite reads a min() or a max() from the index, both at once by a scan.
    # As stored text: a value ``datetime`` cannot parse must not stop the export.
    stored = type_coerce(calls.c.start_time, String)
    low = _stored_ms(conn.execute(select(func.min(stored))).scalar())
    high = _stored_ms(conn.execute(select(func.max(stored))).scalar())
    now = _to_ms(datetime.now(UTC))
    margin = 2 * 86_400_000
    floor, ceiling = cdr.MIN_TIME_MS - margin, cdr.END_TIME_MS + margin
    first = min(now if low is None else low, now) - margin
    last = max(now if high is None else high, now) + margin
    return min(max(floor, first), now), max(min(ceiling, last), now)


def _stored_ms(text: str | None) -> int | None:
    """A stored UTC time (SQLite's text) as epoch ms; None if absent or not a time."""
    if text is None:
        return None
    try:
        return _to_ms(datetime.fromisoformat(text))
    except ValueError:
        return None


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _SqliteTimes:
    """SQL that formats a time column in ``tz``: a balanced ``CASE`` over the zone's offsets
    within the window (one branch for zones without DST), Python outside it."""

    def __init__(self, tz: ZoneInfo, window: tuple[int, int]) -> None:
        self.window = window
        changes, offsets = zones.transitions(window[0], window[1], tz)
        self.starts = [window[0], *changes]
        self.offsets = offsets
        self._iso = zones.iso_times(tz)

    def from_ms(self, ms: int | None) -> str:
        """A time outside the window, formatted by Python (the same text JSON Lines have);
        empty if it has no date in the zone, or is no whole number (SQLite stores anything)."""
        if type(ms) is not int:
            return ""
        return self._iso(ms) or ""

    def from_text(self, text: str | None) -> str:
        """The same for a bookkeeping time, stored as UTC text (empty if it is no time)."""
        ms = _stored_ms(text)
        return "" if ms is None else self.from_ms(ms)

    def ms_cell(self, name: str) -> str:
        low, high = self.window
        tree = self._tree(0, len(self.offsets), name, self._ms_leaf)
        return (
            f"CASE WHEN {name} IS NULL THEN '' WHEN {name} < {low} OR {name} >= {high} "
            f"THEN cdrhub_iso_ms({name}) ELSE {tree} END"
        )

    def text_cell(self, name: str) -> str:
        low, high = (_stored(ms) for ms in self.window)
        tree = self._tree(0, len(self.offsets), name, self._text_leaf, text=True)
        return (
            f"CASE WHEN {name} IS NULL THEN '' WHEN {name} < '{low}' OR {name} >= '{high}' "
            f"THEN cdrhub_iso_text({name}) ELSE {tree} END"
        )

    def _tree(
        self, first: int, end: int, name: str, leaf: Callable[[str, int], str], text: bool = False
    ) -> str:
        """Offsets ``first..end-1`` by binary search on the instants they start at."""
        if end - first == 1:
            return leaf(name, self.offsets[first])
        middle = (first + end) // 2
        bound = f"'{_stored(self.starts[middle])}'" if text else str(self.starts[middle])
        return (
            f"CASE WHEN {name} < {bound} THEN {self._tree(first, middle, name, leaf, text)} "
            f"ELSE {self._tree(middle, end, name, leaf, text)} END"
        )

    @staticmethod
    def _ms_leaf(name: str, offset: int) -> str:
        local = f"({name} + {offset})"
        return (
            f"strftime('%Y-%m-%dT%H:%M:%S', {local} / 1000, 'unixepoch') || "
            f"printf('.%03d{zones.offset_text(offset)}', {local} % 1000)"
        )

    @staticmethod
    def _text_leaf(name: str, offset: int) -> str:
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): the ms are characters 21-23. The
        # seconds go to strftime without their fraction: it reads a time to the nearest ms,
        # so .9995 s and more rounded up into the next second, and 12:00:00.999600 came out
        # as 12:00:01.999. Truncated, as PostgreSQL's to_char and Python's isoformat do.
        return (
            f"strftime('%Y-%m-%dT%H:%M:%S', substr({name}, 1, 19), "
            f"'{offset // 1000:+d} seconds') || '.' || "
            f"substr({name}, 21, 3) || '{zones.offset_text(offset)}'"
        )


def _stored(ms: int) -> str:
    """An instant as SQLite stores UTC times (text that sorts in time order)."""
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_cell(column: Column[Any], times: _SqliteTimes) -> str:
    name, kind = column.name, _kind(column)
    if kind == "time":
        twin = f"{name}_ms"
        return times.ms_cell(twin) if twin in calls.c else times.text_cell(name)
    if kind == "text":
        starts = ",".join(str(ord(c)) for c in FORMULA_START)
        return (
            f"iif({name} IS NULL, '', printf('\"%s%w\"', "
            f"iif(unicode({name}) IN ({starts}), '''', ''), {name}))"
        )
    if kind == "bool":
        return f"CASE {name} WHEN 1 THEN 'true' WHEN 0 THEN 'false' ELSE '' END"
    if kind == "double":
        return f"iif({name} IS NULL, '', printf('%.15g', {name}))"
    return name
