"""The interval report: every 15, 30 or 60 minutes of a day or range, in the call center's zone.

Workforce planning is done in intervals of the local clock, so the intervals are the zone's
wall-clock multiples of the length, walked in UTC: a day clocks go forward has 23 hours of
intervals, a day they go back 25 (its repeated hour twice, told apart by the offset). Each
call falls in the interval whose UTC range holds its start (one ``searchsorted`` over a
million calls), and the figures are ``stats.aggregate``'s, over the same facts and under the
same definitions (docs/metrics.md); only the longest wait is added here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.reports import columns, stats, zones
from cdrhub.reports.columns import NULL, Facts
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store

#: The interval lengths a report takes, in minutes.
LENGTHS = (15, 30, 60)
#: No report lists more intervals than this (a year of 60-minute intervals fits).
MAX_INTERVALS = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Interval:
    """One interval: ``[start_ms, end_ms)`` in UTC, and the zone's offset at its start."""

    start_ms: int
    end_ms: int
    offset_ms: int

    def label(self, tz: ZoneInfo) -> tuple[str, str]:
        """Local ISO start and end, with their offsets (``2026-11-01T01:00-04:00``)."""
        return _iso(self.start_ms, tz), _iso(self.end_ms, tz)


def _iso(ms: int, tz: ZoneInfo) -> str:
    return (_EPOCH + ms * _MS).astimezone(tz).isoformat(timespec="minutes")


def parse_length(value: str | None) -> int:
    """``interval`` as minutes (default 30), or a 422 naming the parameter."""
    if value in (None, ""):
        return 30
    assert value is not None
    if value.strip() not in {str(n) for n in LENGTHS}:
        raise InvalidParameter(
            "invalid value for interval",
            [FieldProblem("interval", value, "15, 30 or 60 (minutes)")],
        )
    return int(value)


def resolve_range(where: CallFilter, tz: ZoneInfo, now: datetime | None = None) -> CallFilter:
    """The filter with both ends set: without ``from``, today (local) from midnight; without
    ``to``, one local day after ``from``. An interval report lists every interval of its
    range, so it needs one."""
    start, end = where.start, where.end
    if start is None:
        today = (now or datetime.now(UTC)).astimezone(tz).date()
        start = datetime(today.year, today.month, today.day, tzinfo=tz).astimezone(UTC)
    if end is None:
        local = start.astimezone(tz)
        day = (local + timedelta(days=1)).replace(tzinfo=None)
        end = day.replace(tzinfo=tz).astimezone(UTC)
    return CallFilter(start, end, where.values)


def intervals(start_ms: int, end_ms: int, minutes: int, tz: ZoneInfo) -> list[Interval]:
    """The intervals covering ``[start_ms, end_ms)``: each ends at the next local multiple of
    ``minutes`` or at a change of the zone's offset, whichever comes first (so a 30-minute
    DST shift, as on Lord Howe Island, splits an hour rather than shifting the grid)."""
    length = minutes * 60_000
    if (end_ms - start_ms) // length > MAX_INTERVALS:
        raise InvalidParameter(
            "range too long for the interval report",
            [FieldProblem("to", end_ms, f"at most {MAX_INTERVALS} intervals after `from`")],
        )
    changes, offsets = zones.transitions(start_ms, max(start_ms, end_ms - 1), tz)
    found: list[Interval] = []
    t, i = start_ms, 0
    while t < end_ms:
        while i < len(changes) and changes[i] <= t:
            i += 1
        offset = offsets[i]
        local = t + offset
        stop = (local // length + 1) * length - offset
        if i < len(changes):
            stop = min(stop, changes[i])
        stop = min(stop, end_ms)
        found.append(Interval(t, stop, offset))
        t = stop
    return found


def _bounds_ms(where: CallFilter) -> tuple[int, int]:
    assert where.start is not None and where.end is not None
    start = -(-((where.start - _EPOCH) // timedelta(microseconds=1)) // 1000)
    end = -(-((where.end - _EPOCH) // timedelta(microseconds=1)) // 1000)
    return start, end


def longest(group: np.ndarray, values: np.ndarray, groups: int) -> list[float | None]:
    """The largest of ``values`` (ms, :data:`NULL` for unknown) per group, in seconds."""
    known = values != NULL
    top = np.full(groups, NULL, np.int64)
    np.maximum.at(top, group[known], values[known])
    return [None if v == NULL else v / 1000 for v in top.tolist()]


def _row(metrics: dict[str, Any], longest_wait: float | None) -> dict[str, Any]:
    """One line of the report from ``stats`` metrics (offered is the ``calls`` metric; AHT
    is the mean talk time, the only handle time NXCC's fields give)."""
    return {
        "offered": metrics["calls"],
        "answered": metrics["answered"],
        "abandoned": metrics["abandoned"],
        "short_abandoned": metrics["short_abandoned"],
        "service_level": metrics["service_level"],
        "asa_seconds": metrics["asa_seconds"],
        "aht_seconds": metrics["avg_talk_seconds"],
        "longest_wait_seconds": longest_wait,
        "abandon_rate": metrics["abandon_rate"],
        "queued": metrics["queued"],
        "talk_seconds": metrics["talk_seconds"],
    }


#: The columns of each interval, after ``start``, ``end`` and ``minutes``.
COLUMNS = tuple(_row({k: None for k in stats.METRICS}, None))


def report(
    store: Store,
    where: CallFilter,
    *,
    minutes: int,
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
) -> dict[str, Any]:
    """``{"intervals": [...], "total": {...}}``: every interval of the range, calls or not."""
    where = resolve_range(where, tz)
    start_ms, end_ms = _bounds_ms(where)
    grid = intervals(start_ms, end_ms, minutes, tz)
    facts = stats.select_facts(store, where)
    return from_facts(
        facts, grid, tz=tz, sl_seconds=sl_seconds, short_abandon_seconds=short_abandon_seconds
    )


def from_facts(
    facts: Facts,
    grid: list[Interval],
    *,
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
) -> dict[str, Any]:
    """The report over facts already selected to the grid's range."""
    starts = np.array([g.start_ms for g in grid], np.int64)
    group = np.searchsorted(starts, facts.arrays["start_ms"], side="right") - 1
    group = np.maximum(group, 0).astype(np.int64)
    options = {"tz": tz, "sl_seconds": sl_seconds, "short_abandon_seconds": short_abandon_seconds}
    labels = [(i,) for i in range(len(grid))]
    found = stats.aggregate(
        facts, ("interval",), groups=(group, labels), with_percentiles=False, **options
    )
    by_index = {g["key"]["interval"]: g for g in found}
    waits = longest(group, facts.arrays["wait_ms"], len(grid)) if grid else []
    zero = _zero(options)
    rows = []
    for i, interval in enumerate(grid):
        start, end = interval.label(tz)
        metrics = by_index.get(i, zero)
        rows.append(
            {
                "start": start,
                "end": end,
                "minutes": _minutes(interval.end_ms - interval.start_ms),
                **_row(metrics, waits[i] if i in by_index else None),
            }
        )
    (overall,) = stats.aggregate(facts, (), with_percentiles=False, **options)
    total_wait = longest(np.zeros(len(facts), np.int64), facts.arrays["wait_ms"], 1)[0]
    return {"intervals": rows, "total": _row(overall, total_wait)}


def _minutes(ms: int) -> int | float:
    """An interval's length in minutes: whole unless a zone change or the range cut it."""
    return ms // 60_000 if ms % 60_000 == 0 else ms / 60_000


def _zero(options: dict[str, Any]) -> dict[str, Any]:
    """The metrics of an interval without calls (counts 0, ratios and means null)."""
    (group,) = stats.aggregate(columns.empty(), (), with_percentiles=False, **options)
    return group
