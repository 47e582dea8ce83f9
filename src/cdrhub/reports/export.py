"""Exports: every matching call as CSV, JSON Lines or Parquet, streamed in constant memory.

Calls leave as byte chunks as soon as a batch is formatted, so a million calls never sit in
memory at once, over HTTP or into a file. CSV lines are formatted by the database itself
(:mod:`cdrhub.csvsql`, the cell rules are there); JSON Lines and Parquet are built here from
:func:`cdrhub.query.iter_calls`. Timestamps are ISO 8601 with the offset of the chosen zone;
each keeps its ``_ms`` twin exactly as NXCC sent it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import BigInteger, Boolean, Double, Integer, SmallInteger

from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.reports import csvsql, query, zones
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store
from cdrhub.store.schema import UTCDateTime, calls

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
COLUMNS = csvsql.COLUMNS  # table order, the same in every format

Progress = Callable[[int], None]


def parse_format(value: str | None) -> Format:
    """``csv`` (the default), ``jsonl`` or ``parquet``; 422 naming ``format`` otherwise."""
    text = (value or "csv").strip().lower()
    if text not in FORMATS:
        raise InvalidParameter(
            "invalid value for format", [FieldProblem("format", value, "csv, jsonl or parquet")]
        )
    if text == "parquet":
        require_parquet()
    return text  # type: ignore[return-value]


def require_parquet() -> None:
    """Parquet needs pyarrow, an optional extra: say how to get it instead of failing later."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InvalidParameter(
            "Parquet export needs pyarrow: pip install 'cdrhub[parquet]'",
            [FieldProblem("format", "parquet", "csv or jsonl (parquet is not installed)")],
        ) from None


def stream(
    store: Store,
    where: CallFilter,
    fmt: Format,
    tz: ZoneInfo,
    *,
    bom: bool = True,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Every call ``where`` selects, in start-time order, as chunks of bytes in ``fmt``.

    ``progress`` is told how many rows each chunk held.
    """
    if fmt == "csv":
        return _csv(store, where, tz, bom, progress)
    batches = query.iter_calls(store, where)
    if fmt == "jsonl":
        return _jsonl(batches, tz, progress)
    return _parquet(batches, tz, progress)


def _csv(
    store: Store, where: CallFilter, tz: ZoneInfo, bom: bool, progress: Progress | None
) -> Iterator[bytes]:
    # The BOM is what makes Excel read UTF-8 (Chinese intents, names) instead of a legacy code page.
    yield ("\ufeff" if bom else "").encode() + (",".join(COLUMNS) + "\n").encode()
    for chunk, rows in csvsql.lines(store, where, tz):
        yield chunk
        if progress:
            progress(rows)


_TIMES = frozenset(c.name for c in calls.columns if isinstance(c.type, UTCDateTime))
_BOOLS = frozenset(c.name for c in calls.columns if isinstance(c.type, Boolean))


def _jsonl(
    batches: Iterable[Sequence[Sequence[Any]]], tz: ZoneInfo, progress: Progress | None
) -> Iterator[bytes]:
    time = zones.iso_times(tz)
    timed = [i for i, c in enumerate(COLUMNS) if c in _TIMES]
    flags = [i for i, c in enumerate(COLUMNS) if c in _BOOLS]
    encode = msgspec.json.Encoder().encode
    for batch in batches:
        if not batch:
            continue
        lines = []
        for row in batch:
            values = list(row)
            for i in timed:
                values[i] = time(values[i])
            for i in flags:
                values[i] = None if values[i] is None else bool(values[i])
            lines.append(encode(dict(zip(COLUMNS, values, strict=True))))
        yield b"\n".join(lines) + b"\n"
        if progress:
            progress(len(batch))


class _Sink(io.RawIOBase):
    """A write-only file that hands over what was written since the last :meth:`take`."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _parquet(
    batches: Iterable[Sequence[Sequence[Any]]], tz: ZoneInfo, progress: Progress | None
) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def arrow_type(column: Any) -> Any:
        kind = column.type
        if isinstance(kind, UTCDateTime):
            return pa.timestamp("ms", tz=tz.key)
        if isinstance(kind, Boolean):
            return pa.bool_()
        if isinstance(kind, SmallInteger):
            return pa.int16()
        if isinstance(kind, BigInteger):
            return pa.int64()
        if isinstance(kind, Integer):
            return pa.int32()
        if isinstance(kind, Double):
            return pa.float64()
        return pa.string()

    schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in calls.columns])
    sink = _Sink()
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        # Row groups of about 50,000 rows: big enough to compress well, small enough to stream.
        flags = [i for i, c in enumerate(COLUMNS) if c in _BOOLS]
        pending: list[Sequence[Any]] = []
        for batch in [*batches, []]:
            pending.extend(batch)
            if len(pending) >= 50_000 or (not batch and pending):
                columns = list(zip(*pending, strict=True))
                for i in flags:  # SQLite's 0/1
                    columns[i] = tuple(None if v is None else bool(v) for v in columns[i])
                arrays = [
                    pa.array(column, type=field.type)
                    for column, field in zip(columns, schema, strict=True)
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                yield sink.take()
                if progress:
                    progress(len(pending))
                pending = []
    yield sink.take()
