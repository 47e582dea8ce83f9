"""An independent CSV export: the rows read with SQLAlchemy, the cells made in Python by the
rules of ``cdrhub.reports.csvsql`` (its docstring), the file written by the csv module.

Nothing here comes from ``cdrhub.reports``: times go through ``datetime.astimezone`` and
``isoformat``, not ``zones``; quoting is the csv module's. A test that compares the real
export with this, byte for byte, fails on any change of order, quoting, formula prefix,
number or time text, BOM or header.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, Double, select

from cdrhub.store import Store
from cdrhub.store.schema import UTCDateTime, calls

#: What a spreadsheet reads as a formula when a cell starts with it (OWASP "CSV injection").
FORMULA = ("=", "+", "-", "@", "\t", "\r")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _Bare:
    """A cell the csv module must write as it is, unquoted (numbers, times, booleans, empty).

    With ``QUOTE_NONNUMERIC`` the csv module quotes every field that is not a number; a
    field with ``__float__`` counts as one and is written as ``str()`` gives it. So text
    cells are always quoted (``"`` doubled inside) and these never are.
    """

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __float__(self) -> float:  # only marks the field as a number for the csv module
        raise TypeError("not a number")


def _time(value: datetime | int | None, tz: ZoneInfo) -> str:
    if value is None:
        return ""
    moment = _EPOCH + timedelta(milliseconds=value) if isinstance(value, int) else value
    return moment.astimezone(tz).isoformat(timespec="milliseconds")  # truncates to the ms


def _cell(column: Any, row: Any, tz: ZoneInfo) -> str | _Bare:
    value = row[column.name]
    if isinstance(column.type, UTCDateTime):
        twin = f"{column.name}_ms"
        # A call's time is its _ms twin as NXCC sent it; bookkeeping times have none.
        return _Bare(_time(row[twin] if twin in calls.c else value, tz))
    if value is None:
        return _Bare("")
    if isinstance(column.type, Boolean):
        return _Bare("true" if value else "false")
    if isinstance(column.type, Double):
        return _Bare(format(value, ".15g"))
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA) else value
    return _Bare(str(value))


def _order(store: Store, row: Any) -> tuple[Any, ...]:
    """The export's order: start time ascending, calls without one first on SQLite and last
    on PostgreSQL (each database's default); ties by callId (tests insert ties in callId
    order, as SQLite keeps them in insertion order)."""
    start = row["start_time_ms"]
    missing_first = store.kind == "sqlite"
    return ((start is not None) if missing_first else (start is None), start or 0, row["call_id"])


def reference_csv(store: Store, tz: ZoneInfo, *, bom: bool = True) -> bytes:
    """Every call in the database as the CSV export must write it."""
    with store.read_engine.connect() as conn:
        rows = [row._mapping for row in conn.execute(select(calls))]
    rows.sort(key=lambda row: _order(store, row))
    out = io.StringIO(newline="")
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow([_Bare(c.name) for c in calls.columns])
    for row in rows:
        writer.writerow([_cell(column, row, tz) for column in calls.columns])
    return ("\ufeff" if bom else "").encode() + out.getvalue().encode()
