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

import json
import queue
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Double,
    Select,
    String,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.engine import Connection

from cdrhub import cdr
from cdrhub.reports import _csvworker, zones
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store
from cdrhub.store.schema import UTCDateTime, calls

#: The columns, in table order (the CSV header).
COLUMNS: tuple[str, ...] = tuple(c.name for c in calls.columns)
#: First characters a spreadsheet reads as a formula (OWASP "CSV injection"), as code points.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

Lines = Iterator[tuple[bytes, int]]

#: Exports run on this many database connections at once, each formatting its own slices of
#: the start-time order (the formatting is the database's CPU work: one core per connection).
WORKERS = 2
#: Rows per slice. Each connection may run one slice ahead of the one being sent, so memory
#: grows with this (about 12 MB of CSV per 20,000 calls) and not with the export's size.
SLICE_ROWS = 20_000
#: Rows per chunk (about 0.6 MB of CSV). Each SQLite child holds one chunk and its rows at a
#: time, and the parent a queue of chunks per connection, so this sets the export's memory:
#: 5,000 rows took the whole export (parent and its 2 children) to 152-160 MB at its peak,
#: 1,000 rows to 118-122 MB, in the same time (BENCHMARKS.md, "CSV export in slices").
BATCH = 1000


def lines(
    store: Store,
    where: CallFilter,
    tz: ZoneInfo,
    *,
    batch: int | None = None,
    workers: int | None = None,
    slice_rows: int | None = None,
) -> Lines:
    """``(chunk, rows)``: the CSV lines of every call ``where`` selects, in start-time order.

    Chunks hold about ``batch`` rows each, so memory stays constant whatever the export's size.
    With ``workers`` above 1 the calls are cut into slices of about ``slice_rows`` by start
    time, formatted on that many connections that all read one snapshot of the database, and
    sent in order: the same bytes as one connection gives, in less time when a second core
    is free (on SQLite the connections are child processes: ``_csvworker``; BENCHMARKS.md).
    """
    workers = WORKERS if workers is None else workers  # read now: tests and benches set them
    batch = BATCH if batch is None else batch
    slice_rows = SLICE_ROWS if slice_rows is None else slice_rows
    if store.kind == "sqlite":
        return _sqlite(store, where, tz, batch, workers, slice_rows)
    return _postgres(store, where, tz, batch, workers, slice_rows)


# -- slices: start-time ranges formatted side by side, sent in order -----------------------------

#: A slice of the start-time order: ``(low, high)`` bounds of non-null start times (None:
#: open), NULL_SLICE (the calls without one) or ALL (every call: one query, no slices).
Slice = tuple[Any, Any] | str | None
NULL_SLICE: Slice = None
ALL: Slice = "all"
Reader = Callable[[Slice], Lines]


def _marks(
    scalar: Callable[[Select[Any]], Any], where: CallFilter, rows: int, stored: bool
) -> list[Any]:
    """Start times ``where`` selects about ``rows`` calls apart, ascending: the bounds of the
    slices (as stored text on SQLite, so they compare as the index does). One query per
    mark, each ``OFFSET rows - 1`` past the last along the start-time index: 0.04 s for a
    million calls on SQLite, where numbering them all by ``row_number()`` took 1.3 s."""
    column = type_coerce(calls.c.start_time, String) if stored else calls.c.start_time
    marks: list[Any] = []
    while True:
        after = [column > marks[-1]] if marks else []
        query = (
            select(column)
            .where(*where.conditions(), calls.c.start_time.is_not(None), *after)
            .order_by(calls.c.start_time)
            .limit(1)
            .offset(rows - 1)
        )
        mark = scalar(query)
        if mark is None:
            return marks
        marks.append(mark)


def _ranges(marks: Iterable[Any]) -> list[Slice]:
    """Start-time ranges between the marks that cover every non-null start time, in order.

    The bounds are start times read from the table, so all the calls of one start time fall
    in one range and their order within it is the one query's. The bounds only split the
    work: a call written since they were read still falls in exactly one range.
    """
    bounds: list[Any] = []
    for mark in marks:
        if not bounds or mark != bounds[-1]:
            bounds.append(mark)
    edges = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _slice_conditions(part: Slice, stored: bool) -> list[ColumnElement[bool]]:
    if part is ALL:
        return []
    if part is NULL_SLICE:
        return [calls.c.start_time.is_(None)]
    assert isinstance(part, tuple)
    column = type_coerce(calls.c.start_time, String) if stored else calls.c.start_time
    low, high = part
    conditions = []
    if low is not None:
        conditions.append(column >= low)
    if high is not None:
        conditions.append(column < high)
    if low is None and high is None:
        conditions.append(calls.c.start_time.is_not(None))
    return conditions


def _in_order(readers: list[Reader], slices: list[Slice], batch: int, slice_rows: int) -> Lines:
    """Slice ``i`` is read by ``readers[i % len(readers)]`` in its own thread; the chunks come
    out slice by slice, in order. A reader runs at most about one slice ahead (a bounded queue),
    so memory stays bounded whatever the export's size. The threads mostly wait, with the GIL
    released: the formatting happens in PostgreSQL's backends or in SQLite's child processes."""
    if len(readers) == 1 or len(slices) == 1:
        for part in slices:
            yield from readers[0](part)
        return
    stop = threading.Event()
    depth = max(2, slice_rows // max(batch, 1) + 1)
    queues: list[queue.Queue[Any]] = [queue.Queue(depth) for _ in readers]

    def put(box: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(index: int) -> None:
        box = queues[index]
        try:
            for part in slices[index :: len(readers)]:
                chunks = readers[index](part)
                try:
                    for chunk in chunks:
                        if not put(box, chunk):
                            return
                finally:
                    chunks.close()  # type: ignore[attr-defined]
                if not put(box, _END):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            put(box, _Failed(error))

    threads = [
        threading.Thread(target=work, args=(i,), name=f"cdrhub-csv-{i}", daemon=True)
        for i in range(len(readers))
    ]
    for thread in threads:
        thread.start()
    try:
        for i in range(len(slices)):
            box = queues[i % len(readers)]
            while (item := box.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item
    finally:
        # Also when the reader went away mid-export (a closed download): stop and wait for
        # the threads, so their connections go back to the pool unused by anyone.
        stop.set()
        for thread in threads:
            thread.join()


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


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


def _postgres(
    store: Store, where: CallFilter, tz: ZoneInfo, batch: int, workers: int, slice_rows: int
) -> Lines:
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
    dialect = store.read_engine.dialect

    def statement(part: Slice) -> tuple[str, dict[str, Any]]:
        query = (
            select(*(literal_column(c).label(n) for c, n in zip(cells, COLUMNS, strict=True)))
            .select_from(calls)
            .where(*where.conditions(), *_slice_conditions(part, stored=False))
            .order_by(calls.c.start_time.asc(), calls.c.call_id.asc())
        )
        compiled = query.compile(dialect=dialect)
        copy = f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE ({texts}))"
        return copy, compiled.params

    def reader(raw: Any) -> Reader:
        def read(part: Slice) -> Lines:
            copy_sql, params = statement(part)
            with raw.cursor() as cursor, cursor.copy(copy_sql, params) as copy:
                pending: list[bytes] = []
                for data in copy:  # one row per CopyData message, by the protocol
                    pending.append(bytes(data))
                    if len(pending) >= batch:
                        yield b"".join(pending), len(pending)
                        pending = []
                if pending:
                    yield b"".join(pending), len(pending)

        return read

    with ExitStack() as stack:
        first = _pg_snapshot(stack, stack.enter_context(store.read_engine.connect()))
        slices: list[Slice] = [ALL]
        if workers > 1:

            def scalar(query: Select[Any]) -> Any:
                compiled = query.compile(dialect=dialect)
                with first.cursor() as cursor:
                    row = cursor.execute(str(compiled), compiled.params).fetchone()
                return None if row is None else row[0]

            ranges = _ranges(_marks(scalar, where, slice_rows, stored=False))
            if len(ranges) > 1:  # NULL start times sort last here (ascending's default)
                slices = [*ranges, NULL_SLICE]
        raws = [first]
        if len(slices) > 1:
            # One snapshot for all: the others import the first's, so every slice reads the
            # same committed state whatever is written meanwhile.
            snapshot = first.execute("SELECT pg_export_snapshot()").fetchone()[0]
            for _ in range(workers - 1):
                raw = _pg_snapshot(stack, stack.enter_context(store.read_engine.connect()))
                raw.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")  # the server's own id
                raws.append(raw)
        for raw in raws:
            # Both only for this transaction: the connection goes back to the pool unchanged.
            raw.execute("SELECT set_config('TimeZone', %s, true)", (tz.key,))
            raw.execute("SELECT set_config('extra_float_digits', '0', true)")
        yield from _in_order([reader(raw) for raw in raws], slices, batch, slice_rows)


def _pg_snapshot(stack: ExitStack, conn: Connection) -> Any:
    """The driver connection, in a read-only REPEATABLE READ transaction from its next
    statement on, put back as it was (rolled back, same isolation) when ``stack`` closes."""
    import psycopg

    raw = conn.connection.driver_connection
    assert raw is not None
    raw.rollback()
    before = raw.isolation_level, raw.read_only
    raw.isolation_level, raw.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True

    def restore() -> None:
        raw.rollback()
        raw.isolation_level, raw.read_only = before

    stack.callback(restore)
    return raw


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


def _sqlite(
    store: Store, where: CallFilter, tz: ZoneInfo, batch: int, workers: int, slice_rows: int
) -> Lines:
    with ExitStack() as stack:
        first = stack.enter_context(store.read_engine.connect())
        formats = _SqliteTimes(tz, _window(first))
        cells = [_sqlite_cell(column, formats) for column in calls.columns]
        line = "printf('" + ",".join(["%s"] * len(cells)) + "\n', " + ", ".join(cells) + ")"
        # As a BLOB: the driver hands over the UTF-8 bytes as they are, instead of decoding
        # each line to a str that is then encoded back (a fifth of the fetching, measured).
        line = f"CAST({line} AS BLOB)"

        def statement(part: Slice) -> Select[Any]:
            return (
                select(literal_column(line))
                .select_from(calls)
                .where(*where.conditions(), *_slice_conditions(part, stored=True))
                .order_by(calls.c.start_time)
            )

        slices: list[Slice] = [ALL]
        if workers > 1:
            marks = _marks(lambda q: first.execute(q).scalar(), where, slice_rows, stored=True)
            ranges = _ranges(marks)
            if len(ranges) > 1:  # NULL start times sort first here (ascending's default)
                slices = [NULL_SLICE, *ranges]
        raw = first.connection.driver_connection
        assert raw is not None
        raw.create_function("cdrhub_iso_ms", 1, formats.from_ms, deterministic=True)
        raw.create_function("cdrhub_iso_text", 1, formats.from_text, deterministic=True)

        def read(part: Slice) -> Lines:
            # sqlite3 steps its cursor lazily: lines straight from it, in batches.
            result = first.execute(statement(part))
            try:
                cursor = result.cursor
                while rows := cursor.fetchmany(batch):
                    yield b"".join(row[0] for row in rows), len(rows)
            finally:
                result.close()

        readers: list[Reader] = [read]
        if len(slices) > 1:
            # Every slice in a child: this process only passes their bytes on (fetching rows
            # into Python strings costs about a third of a connection's time, measured).
            dialect = store.read_engine.dialect
            jobs = [
                [_sqlite_sql(statement(part), dialect) for part in slices[i::workers]]
                for i in range(workers)
            ]
            children = _sqlite_snapshot(store, stack, first, tz, batch, jobs)
            if children:
                readers = [_child_reader(child) for child in children]
        yield from _in_order(readers, slices, batch, slice_rows)


def _sqlite_sql(query: Select[Any], dialect: Any) -> tuple[str, list[Any]]:
    """The SQL text and the parameters as the driver gets them (bind processors applied)."""
    compiled = query.compile(dialect=dialect)
    params = compiled.construct_params()
    processors = compiled._bind_processors
    names = compiled.positiontup or []
    return str(compiled), [
        processors[name](params[name]) if name in processors else params[name] for name in names
    ]


def _sqlite_snapshot(
    store: Store,
    stack: ExitStack,
    first: Connection,
    tz: ZoneInfo,
    batch: int,
    jobs: list[list[tuple[str, list[Any]]]],
) -> list[subprocess.Popen[bytes]]:
    """Child processes (:mod:`._csvworker`), one per job, whose read transactions see the same
    committed state as ``first``'s; none if that cannot be had (then ``first`` does it all).

    SQLite (WAL) fixes a read transaction's snapshot at its first read, per connection, so
    connections that start one after the other may see different commits. Holding the write
    lock while each makes its first read means no commit can fall between them: the export
    reads the database exactly as it was at that moment, as one connection would. Writers
    wait for the lock that long (one small read per connection, about a millisecond).
    Without the lock (a read-only file, a writer holding it past the busy timeout) the
    export runs on the one connection: slower, never inconsistent.
    """
    database = store.read_engine.url.database or ""
    children = []
    for slices in jobs:
        child = subprocess.Popen(
            [sys.executable, _csvworker.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        stack.callback(_end_child, child)
        job = {"database": database, "tz": tz.key, "batch": batch, "timeout_ms": 5000}
        assert child.stdin is not None
        child.stdin.write(json.dumps({**job, "slices": slices}).encode() + b"\n")
        child.stdin.flush()
        children.append(child)
    first.rollback()  # the plan's snapshot ends; all of them start one together below
    try:
        fence = sqlite3.connect(database, timeout=5, isolation_level=None)
    except sqlite3.Error:
        return []
    try:
        try:
            fence.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return []
        first.execute(select(calls.c.call_id).limit(1)).all()
        for child in children:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(b"pin\n")
            child.stdin.flush()
        for child in children:
            assert child.stdout is not None
            if child.stdout.readline() != b"pinned\n":
                raise RuntimeError("a CSV export worker did not start")
        return children
    finally:
        fence.close()  # rolls back: nothing was written


def _child_reader(child: subprocess.Popen[bytes]) -> Reader:
    """The next slice of a child's, as it frames it (it has its slices in order already)."""
    stdout = child.stdout
    assert stdout is not None

    def exactly(size: int) -> bytes:
        data = stdout.read(size)
        if len(data) != size:
            raise RuntimeError(f"a CSV export worker exited ({child.poll()})")
        return data

    def read(part: Slice) -> Lines:
        while True:
            rows, size = _csvworker.FRAME.unpack(exactly(_csvworker.FRAME.size))
            if rows == _csvworker.END:
                return
            data = exactly(size)
            if rows == _csvworker.FAILED:
                raise RuntimeError(f"a CSV export worker failed: {data.decode()}")
            yield data, rows

    return read


def _end_child(child: subprocess.Popen[bytes]) -> None:
    """Stop a child whatever it was doing (done, or cut off by a closed download)."""
    if child.poll() is None:
        child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()


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
