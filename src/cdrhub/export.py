"""Exports: every matching call as CSV, JSON Lines or Parquet, streamed in constant memory.

Rows come from :func:`cdrhub.query.iter_calls` (a server-side cursor) and leave as byte chunks
as soon as a few hundred are formatted, so a million calls never sit in memory at once, over
HTTP or into a file. Timestamps are ISO 8601 with the offset of the chosen zone; each keeps its
``_ms`` twin exactly as NXCC sent it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Boolean, Double, Integer, SmallInteger

from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.query import to_item
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
_CHUNK_ROWS = 500

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
    rows: Iterable[dict[str, Any]],
    fmt: Format,
    tz: ZoneInfo,
    *,
    bom: bool = True,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Format call rows as chunks of bytes; ``progress`` is told how many rows each chunk held."""
    if fmt == "csv":
        return _csv(rows, tz, bom, progress)
    if fmt == "jsonl":
        return _jsonl(rows, tz, progress)
    return _parquet(rows, tz, progress)


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _csv(
    rows: Iterable[dict[str, Any]], tz: ZoneInfo, bom: bool, progress: Progress | None
) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    # The BOM is what makes Excel read UTF-8 (Chinese intents, names) instead of a legacy code page.
    yield ("\ufeff" if bom else "").encode() + buffer.getvalue().encode()
    for chunk in _chunks(rows, _CHUNK_ROWS):
        buffer.seek(0)
        buffer.truncate()
        for row in chunk:
            item = to_item(row, tz)
            writer.writerow([_cell(item[c]) for c in COLUMNS])
        yield buffer.getvalue().encode()
        if progress:
            progress(len(chunk))


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return neutralise(value)
    return value


def _jsonl(
    rows: Iterable[dict[str, Any]], tz: ZoneInfo, progress: Progress | None
) -> Iterator[bytes]:
    for chunk in _chunks(rows, _CHUNK_ROWS):
        lines = [json.dumps(to_item(row, tz), ensure_ascii=False) for row in chunk]
        yield ("\n".join(lines) + "\n").encode()
        if progress:
            progress(len(chunk))


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
    rows: Iterable[dict[str, Any]], tz: ZoneInfo, progress: Progress | None
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
        # One row group per 50,000 rows: big enough to compress well, small enough to stream.
        for chunk in _chunks(rows, 50_000):
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
            yield sink.take()
            if progress:
                progress(len(chunk))
    yield sink.take()
