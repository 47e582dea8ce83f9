"""Exports: every matching call as CSV, JSON Lines or Parquet, streamed in constant memory.

Rows come from :func:`cdrhub.query.iter_calls` (a server-side cursor) in batches and leave as
byte chunks as soon as a batch is formatted, so a million calls never sit in memory at once, over
HTTP or into a file. Timestamps are ISO 8601 with the offset of the chosen zone; each keeps its
``_ms`` twin exactly as NXCC sent it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import BigInteger, Boolean, Double, Integer, SmallInteger

from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.store.schema import UTCDateTime, calls

Format = Literal["csv", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "parquet")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
COLUMNS: tuple[str, ...] = tuple(c.name for c in calls.columns)

#: Characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection"); tab
#: and carriage return too, as some spreadsheets strip them and then see the next character.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

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


def neutralise(value: str) -> str:
    """Make a text cell inert in a spreadsheet: a leading ``'`` before formula characters.

    A caller or intent field is free text from the outside world; ``=HYPERLINK(...)`` in it
    must show as text in Excel, not run. (Only text cells: numbers such as a negative price
    are written as numbers.)
    """
    return "'" + value if value.startswith(_FORMULA_START) else value


def export(
    batches: Iterable[Sequence[Sequence[Any]]],
    fmt: Format,
    tz: ZoneInfo,
    *,
    bom: bool = True,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Format batches of rows (``query.iter_calls``) as chunks of bytes, one per batch.

    ``progress`` is told how many rows each chunk held. Work is done a column at a time
    (one comprehension per column and batch, no function call per cell): a million calls
    are 40 million cells.
    """
    if fmt == "csv":
        return _csv(batches, tz, bom, progress)
    if fmt == "jsonl":
        return _jsonl(batches, tz, progress)
    return _parquet(batches, tz, progress)


_TIMES = frozenset(c.name for c in calls.columns if isinstance(c.type, UTCDateTime))
_TEXTS = frozenset(
    c.name
    for c in calls.columns
    if not isinstance(c.type, UTCDateTime | Boolean) and c.type.python_type is str
)
_BOOLS = frozenset(c.name for c in calls.columns if isinstance(c.type, Boolean))


def iso_times(tz: ZoneInfo) -> Callable[[int | None], str | None]:
    """Epoch ms to ISO 8601 in ``tz`` with ms and offset, as ``datetime.isoformat`` gives.

    The local date, hour, minute and offset are worked out once per UTC minute (a zone's
    offset is whole minutes), so a time costs one dict lookup and a small f-string.
    """
    minutes: dict[int, tuple[str, str]] = {}

    def text(ms: int | None) -> str | None:
        if ms is None:
            return None
        minute, rest = divmod(ms, 60_000)
        parts = minutes.get(minute)
        if parts is None:
            local = (_EPOCH + timedelta(minutes=minute)).astimezone(tz)
            parts = minutes[minute] = (local.strftime("%Y-%m-%dT%H:%M:"), local.isoformat()[19:])
        return f"{parts[0]}{rest // 1000:02d}.{rest % 1000:03d}{parts[1]}"

    return text


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _csv_converters(tz: ZoneInfo) -> list[Callable[[Sequence[Any]], list[Any]]]:
    time = iso_times(tz)
    formula = _FORMULA_START

    def times(values: Sequence[Any]) -> list[Any]:
        return ["" if v is None else time(v) for v in values]

    def texts(values: Sequence[Any]) -> list[Any]:
        return ["" if v is None else "'" + v if v.startswith(formula) else v for v in values]

    def bools(values: Sequence[Any]) -> list[Any]:
        return ["" if v is None else "true" if v else "false" for v in values]

    def others(values: Sequence[Any]) -> list[Any]:
        return ["" if v is None else v for v in values]

    return [
        times if c in _TIMES else texts if c in _TEXTS else bools if c in _BOOLS else others
        for c in COLUMNS
    ]


def _csv(
    batches: Iterable[Sequence[Sequence[Any]]], tz: ZoneInfo, bom: bool, progress: Progress | None
) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    # The BOM is what makes Excel read UTF-8 (Chinese intents, names) instead of a legacy code page.
    yield ("\ufeff" if bom else "").encode() + buffer.getvalue().encode()
    converters = _csv_converters(tz)
    for batch in batches:
        if not batch:
            continue
        buffer.seek(0)
        buffer.truncate()
        cells = [
            convert(column)
            for convert, column in zip(converters, zip(*batch, strict=True), strict=True)
        ]
        writer.writerows(zip(*cells, strict=True))
        yield buffer.getvalue().encode()
        if progress:
            progress(len(batch))


def _jsonl(
    batches: Iterable[Sequence[Sequence[Any]]], tz: ZoneInfo, progress: Progress | None
) -> Iterator[bytes]:
    time = iso_times(tz)
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
