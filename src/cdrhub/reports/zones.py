"""A time zone's UTC offsets over a range of instants, found once so a million times need not
ask ``zoneinfo`` one by one (statistics' local buckets, the database-formatted CSV export).

Every function here takes any integer of epoch ms, not only the times cdrhub accepts today:
rows stored by older versions, migrations or imports can hold anything, and one of them must
not break a reader for everyone (issue #12). An instant whose local time has no date in
years 1 to 9999 (what ``datetime`` can hold) has no ISO text here (None); its ``_ms`` twin
still says exactly what was stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import numpy as np

_STEP_MS = 6 * 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
#: The instants ``datetime`` holds in UTC, kept 2 days inside so any zone's offset applies.
_FIRST_MS = (datetime(1, 1, 3, tzinfo=UTC) - _EPOCH) // _MS
_LAST_MS = (datetime(9999, 12, 29, tzinfo=UTC) - _EPOCH) // _MS


def transitions(first_ms: int, last_ms: int, tz: ZoneInfo) -> tuple[list[int], list[int]]:
    """``(changes, offsets)``: ``offsets[0]`` holds from ``first_ms`` on, ``offsets[i]`` from
    ``changes[i - 1]`` on, up to ``last_ms``. Offsets in ms; ``changes`` ascending.

    The offset is sampled every 6 hours over the range (no zone changes twice that fast);
    between two samples that differ, the exact instant is found by bisection. The cost grows
    with the range: callers bound it (see :func:`offsets_at` for scattered instants).
    """
    first, last = first_ms // _STEP_MS, last_ms // _STEP_MS + 1
    samples = [offset_ms(i * _STEP_MS, tz) for i in range(first, last + 1)]
    changes: list[int] = []
    offsets = [samples[0]]
    for i in range(1, len(samples)):
        if samples[i] != samples[i - 1]:
            changes.append(_change((first + i - 1) * _STEP_MS, (first + i) * _STEP_MS, tz))
            offsets.append(samples[i])
    return changes, offsets


def _change(before: int, after: int, tz: ZoneInfo) -> int:
    """The first instant in ``(before, after]`` with ``after``'s offset, by bisection."""
    old = offset_ms(before, tz)
    while after - before > 1:
        middle = (before + after) // 2
        if offset_ms(middle, tz) == old:
            before = middle
        else:
            after = middle
    return after


def offsets_at(utc_ms: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """The zone's UTC offset in ms at each instant (an instant on a change has the new one).

    Only the 6-hour steps that hold an instant are looked at, so the cost follows the data,
    not the span between its first and last time (one call in year 9999 among calls of 2026
    must not cost 8,000 years of samples).
    """
    # Here, not at import: the rest of this module serves the calls list and the exports,
    # which a server runs without NumPy (15 MB); whoever has arrays has loaded it already.
    import numpy as np

    if not len(utc_ms):
        return np.zeros(0, np.int64)
    first, last = int(utc_ms.min()), int(utc_ms.max())
    if (last - first) // _STEP_MS < _SPAN_STEPS:  # the usual case: one pass over the range
        changes, values = transitions(first, last, tz)
        if not changes:
            return np.full(len(utc_ms), values[0], np.int64)
        return np.array(values, np.int64)[np.searchsorted(changes, utc_ms, side="right")]
    cells, inverse = np.unique(utc_ms // _STEP_MS, return_inverse=True)
    inverse = inverse.reshape(-1)
    before = np.empty(len(cells), np.int64)
    after = np.empty(len(cells), np.int64)
    change = np.full(len(cells), np.iinfo(np.int64).max, np.int64)
    known: dict[int, int] = {}
    for i, cell in enumerate(cells.tolist()):
        start, end = cell * _STEP_MS, (cell + 1) * _STEP_MS
        if start not in known:
            known[start] = offset_ms(start, tz)
        known[end] = offset_ms(end, tz)
        before[i], after[i] = known[start], known[end]
        if known[start] != known[end]:
            change[i] = _change(start, end, tz)
    return np.where(utc_ms >= change[inverse], after[inverse], before[inverse])


#: Up to this many 6-hour steps (about 34 years) a range is sampled whole; the offsets of
#: instants spread wider are looked up step by step where they are (a sort of the instants).
_SPAN_STEPS = 50_000


def offset_ms(ms: int, tz: ZoneInfo) -> int:
    """The zone's UTC offset at an instant, in ms (beyond ``datetime``'s years, the offset at
    the nearest instant it holds)."""
    moment = _EPOCH + timedelta(milliseconds=min(max(ms, _FIRST_MS), _LAST_MS))
    return (moment.astimezone(tz).utcoffset() or timedelta(0)) // _MS


def local(ms: int, tz: ZoneInfo) -> datetime | None:
    """The instant as an aware datetime in ``tz``, or None if its local date is not in years
    1 to 9999."""
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz)
    except OverflowError:
        pass
    # Past the end of ``datetime`` in UTC, yet maybe not here (year 10000 UTC is still
    # 9999-12-31 in New York): the wall time from the offset, as PostgreSQL shows it.
    offset = offset_ms(ms, tz)
    try:
        zone = timezone(timedelta(milliseconds=offset))
        return datetime(1970, 1, 1, tzinfo=zone) + timedelta(milliseconds=ms + offset)
    except OverflowError:
        return None


def offset_text(offset: int) -> str:
    """An offset in ms as ISO 8601 writes it (``+08:00``, ``-03:30``; seconds only if any),
    the same text ``datetime.isoformat`` gives."""
    sign = "-" if offset < 0 else "+"
    minutes, seconds = divmod(abs(offset) // 1000, 60)
    text = f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


def iso_times(tz: ZoneInfo) -> Callable[[int | None], str | None]:
    """Epoch ms to ISO 8601 in ``tz`` with ms and offset, as ``datetime.isoformat`` gives;
    None for None and for an instant without a local date in years 1 to 9999.

    The local date, hour, minute and offset are worked out once per UTC minute, so a time
    costs one dict lookup and a small f-string. Minutes whose offset is not whole minutes
    (local mean time before about 1900; Monrovia until 1972) are formatted one by one, and so
    are the minutes at the ends of ``datetime``'s range.
    """
    minutes: dict[int, tuple[str, str] | None] = {}

    def exact(ms: int) -> str | None:
        moment = local(ms, tz)
        return None if moment is None else moment.isoformat(timespec="milliseconds")

    def text(ms: int | None) -> str | None:
        if ms is None:
            return None
        minute, rest = divmod(ms, 60_000)
        if minute in minutes:
            parts = minutes[minute]
        else:
            first, last = local(minute * 60_000, tz), local(minute * 60_000 + 59_999, tz)
            whole = first is not None and last is not None and first.second == 0
            parts = minutes[minute] = (
                (first.isoformat()[:17], first.isoformat()[19:])
                if whole and first is not None
                else None
            )
        if parts is None:
            return exact(ms)
        return f"{parts[0]}{rest // 1000:02d}.{rest % 1000:03d}{parts[1]}"

    return text
