"""Call-center statistics: each metric of docs/metrics.md, computed one way everywhere.

The per-call facts (wait, speed of answer, talk, abandoned...) are derived by
:func:`cdrhub.reports.callfacts.call_facts` for one call (the call detail shows them) and by
``columns.from_rows`` for many, under the same rules, so a number in a report can be traced to
the calls behind it. Aggregation is vectorised over those columns, read from the hourly
snapshots that ``rollup`` keeps in step with every write (or, for a filter they cannot answer,
from a scan): time buckets come from the epoch milliseconds through ``zoneinfo``, so day and
hour boundaries are the call center's, DST included, identically on SQLite and PostgreSQL; sums
are exact integers of ms and micro-units; percentiles are exact (``percentile_cont``'s
interpolation).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import select

from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.reports import columns, rollup, zones
from cdrhub.reports.columns import NULL, Facts
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store
from cdrhub.store.schema import calls

#: Every metric, in the order the API and the CLI show them.
METRICS: tuple[str, ...] = (
    "calls",
    "answered",
    "queued",
    "abandoned",
    "short_abandoned",
    "answer_rate",
    "abandon_rate",
    "service_level",
    "asa_seconds",
    "avg_wait_seconds",
    "p90_wait_seconds",
    "talk_seconds",
    "avg_talk_seconds",
    "p90_talk_seconds",
    "avg_ring_seconds",
    "cost_total",
    "cost_per_answered_minute",
)

#: Decimal places of every figure that is not a count (ratios, seconds, money), wherever it
#: leaves this module: the API, `cdrhub stats` JSON/CSV and the pages read the same rounded
#: numbers, so they agree digit for digit and carry no float noise (21.470000000000002).
#: Four places keep a ratio to 0.01 percentage point, a time to 0.1 ms and a cost to the
#: 4 decimals NXCC's prices have (docs/metrics.md, "Precision").
FIGURE_DIGITS = 4

TIME_GROUPS = ("hour", "day", "week", "month")
#: Groupable call attributes: their key name and column (camelCase names are accepted too).
FIELD_GROUPS = {
    "direction": calls.c.direction,
    "agent": calls.c.agent_name,
    "task_id": calls.c.task_id,
    "intent": calls.c.intent,
    "hangup_by": calls.c.hangup_by,
    "hangup_reason": calls.c.hangup_reason,
}
_ALIASES = {
    "taskid": "task_id",
    "hangupby": "hangup_by",
    "hangupreason": "hangup_reason",
    "agentname": "agent",
}


def percentiles(
    group: np.ndarray, ms: np.ndarray, groups: int, fraction: float
) -> list[float | None]:
    """The percentile of ``ms / 1000`` within each of ``groups`` groups (``group``: 0..n-1).

    Linear interpolation between the closest ranks, as PostgreSQL's ``percentile_cont``.

    Values are ordered by one integer key (group, then value), and only the two ranks each
    group's percentile needs are put in place (``np.partition``), not the whole order. The
    key is exact while groups x value range fits in 63 bits; otherwise a full two-key sort.
    """
    counts = np.bincount(group, minlength=groups)
    if not len(ms):
        return [None] * groups
    starts = np.cumsum(counts) - counts
    position = fraction * np.maximum(counts - 1, 0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(counts - 1, 0))
    last = len(ms) - 1
    ranks = np.minimum(starts + low, last), np.minimum(starts + high, last)
    floor, top = int(ms.min()), int(ms.max())
    span = top - floor + 1
    if groups * span < 1 << 62:
        key = np.partition(group * span + (ms - floor), np.unique(np.concatenate(ranks)))
        ordered = key % span + floor
    else:
        ordered = ms[np.lexsort((ms, group))]
    below, above = ordered[ranks[0]] / 1000, ordered[ranks[1]] / 1000
    result = below + (above - below) * (position - low)
    return [float(r) if c else None for r, c in zip(result.tolist(), counts.tolist(), strict=True)]


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


# -- grouping -----------------------------------------------------------------------------------


def parse_group_by(value: str | None) -> tuple[str, ...]:
    """``day,agent`` to ``("day", "agent")``; at most one time bucket, no repeats."""
    if value in (None, "", "none"):
        return ()
    assert value is not None
    names: list[str] = []
    for part in value.split(","):
        word = part.strip()
        name = _ALIASES.get(word.lower(), word.lower())
        if name not in TIME_GROUPS and name not in FIELD_GROUPS:
            allowed = ", ".join((*TIME_GROUPS, *FIELD_GROUPS))
            raise InvalidParameter(
                "invalid value for group_by",
                [FieldProblem("group_by", value, f"none, or a comma-separated list of {allowed}")],
            )
        if name in names:
            raise InvalidParameter(
                "invalid value for group_by",
                [FieldProblem("group_by", value, f"{name} only once")],
            )
        names.append(name)
    if sum(n in TIME_GROUPS for n in names) > 1:
        raise InvalidParameter(
            "invalid value for group_by",
            [FieldProblem("group_by", value, "at most one of hour, day, week, month")],
        )
    return tuple(names)


def bucketer(unit: str, tz: ZoneInfo) -> Callable[[int | None], str | None]:
    """Epoch ms to the local bucket it falls in, as a string key (the keys of :func:`compute`).

    ``hour`` keys carry the UTC offset (``2026-11-01T01:00-04:00``): on the night clocks go
    back, the two local 01:00 hours are different hours. Results are cached per UTC minute
    (zone offsets are whole minutes), which makes a million calls cheap to bucket.
    """
    cache: dict[int, str] = {}

    def key(ms: int | None) -> str | None:
        if ms is None:
            return None
        minute = ms // 60_000
        found = cache.get(minute)
        if found is None:
            offset = zones.offset_ms(minute * 60_000, tz)
            local = minute * 60_000 + offset
            day = local // _DAY_MS
            if unit == "hour":
                hour = local // _HOUR_MS
                found = f"{_date(day)}T{hour % 24:02d}:00{zones.offset_text(offset)[:6]}"
            elif unit == "week":  # ISO weeks: the key is the Monday
                found = _date((day + 3) // 7 * 7 - 3)
            else:
                found = _date(day) if unit == "day" else _date(day)[:-3]
            cache[minute] = found
        return found

    return key


# -- the query ------------------------------------------------------------------------------------

#: Filters the hourly snapshots do not carry (phone numbers, order ids): answered by a scan.
_SCAN_ONLY = frozenset({"caller", "caller_prefix", "callee", "callee_prefix", "order_id"})
#: Text filters and groups, by the name of their column in :mod:`cdrhub.columns`.
_TEXT = {
    "agent": "agent",
    "task_id": "task_id",
    "intent": "intent",
    "hangup_reason": "hangup_reason",
    "call_status": "call_status",
}


def compute(
    store: Store,
    where: CallFilter,
    *,
    group_by: Iterable[str] = (),
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
) -> list[dict[str, Any]]:
    """Every metric per group: ``[{"key": {...}, "calls": ..., ...}]``, groups sorted by key.

    Without grouping there is exactly one group, ``key`` ``{}``, even over no calls (its counts
    are 0 and its ratios and means null). With grouping, only groups that have calls appear.
    """
    names = tuple(group_by)
    return aggregate(
        select_facts(store, where, names),
        names,
        tz=tz,
        sl_seconds=sl_seconds,
        short_abandon_seconds=short_abandon_seconds,
    )


def select_facts(store: Store, where: CallFilter, group_by: Iterable[str] = ()) -> Facts:
    """The facts of the calls ``where`` selects: from the hourly snapshots when they can say.

    Text attributes are kept only if ``where`` or ``group_by`` needs them.
    """
    if _SCAN_ONLY & set(where.values):
        with store.read_engine.connect() as conn:
            rows = conn.execute(select(*columns.SOURCE).where(*where.conditions())).all()
        return columns.from_rows(rows)
    start, end = _ms(where.start), _ms(where.end)
    text = {_TEXT[n] for n in (*where.values, *group_by) if n in _TEXT}
    facts = rollup.load(store, start, end, sorted(text))
    a = facts.arrays
    keep = np.ones(len(facts), bool)
    if start is not None:
        keep &= (a["start_ms"] != NULL) & (a["start_ms"] >= start)
    if end is not None:
        keep &= (a["start_ms"] != NULL) & (a["start_ms"] < end)
    for name, value in where.values.items():
        if name in ("answered", "has_recording"):
            keep &= a[name] == int(bool(value))
        elif name in _TEXT:
            column = _TEXT[name]
            words = facts.words[column]
            code = words.index(value) if value in words else -1
            keep &= a[column] == code
        else:  # direction, hangup_by
            keep &= a[name] == value
    if keep.all():
        return facts
    return Facts({name: array[keep] for name, array in a.items()}, facts.words)


def _ms(moment: datetime | None) -> int | None:
    """A bound in epoch ms, rounded up: ``start_ms >= bound`` then equals SQL's comparison."""
    if moment is None:
        return None
    micro = (moment - _EPOCH) // timedelta(microseconds=1)
    return -(-micro // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def aggregate(
    facts: Facts,
    names: tuple[str, ...],
    *,
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
    with_percentiles: bool = True,
    groups: tuple[np.ndarray, list[tuple[Any, ...]]] | None = None,
) -> list[dict[str, Any]]:
    """Every metric of docs/metrics.md for each group of ``facts``, vectorised.

    ``with_percentiles=False`` leaves the p90 metrics out (their keys too, so nothing can
    show a missing one as a value): they are a third of a report's time, and the dashboard's
    overview shows none. ``groups`` (each call's group number and each number's key, one key
    part per name) replaces the built-in groupings, for buckets they do not know (the 15- and
    30-minute intervals of ``intervals.py``), so those reports share these definitions.
    """
    a = facts.arrays
    group, labels = _groups(facts, names, tz) if groups is None else groups
    if names:
        group, found = _compact(group, len(labels))
        keys = [labels[i] for i in found]
    else:
        keys = [()]
    n = len(keys)

    def total(values: np.ndarray, mask: np.ndarray) -> list[float]:
        # Masked-out values (the NULL marker among them) times False are 0: one multiply
        # instead of two boolean selections, which cost several times more here.
        return np.bincount(group, weights=values * mask, minlength=n).tolist()

    answered = a["answered"] == 1
    queued = a["queued"] == 1
    has_wait, has_soa = a["wait_ms"] != NULL, a["soa_ms"] != NULL
    has_talk, has_ring = a["talk_ms"] != NULL, a["ring"] != NULL
    flags = {
        "answered": answered,
        "queued": queued,
        "short_abandoned": queued
        & ~answered
        & has_wait
        & (a["wait_ms"] / 1000 < short_abandon_seconds),
        "within": has_soa & (a["soa_ms"] / 1000 <= sl_seconds),
        "waits": has_wait,
        "soas": has_soa,
        "talks": has_talk,
        "rings": has_ring,
    }
    sums = {
        "calls": np.bincount(group, minlength=n).tolist(),
        **_counts(group, n, flags),
        "abandoned": np.bincount(group[queued & ~answered], minlength=n).tolist(),
        "wait_sum": total(a["wait_ms"], has_wait),
        "soa_sum": total(a["soa_ms"], has_soa),
        "talk_sum": total(a["talk_ms"], has_talk),
        "ring_sum": total(a["ring"], has_ring),
        "cost_sum": total(a["cost_micro"], a["cost_micro"] != NULL),
    }
    if with_percentiles:
        sums["p90_wait"] = percentiles(group[has_wait], a["wait_ms"][has_wait], n, 0.9)
        sums["p90_talk"] = percentiles(group[has_talk], a["talk_ms"][has_talk], n, 0.9)
    result = []
    for i, key in enumerate(keys):
        c = {name: values[i] for name, values in sums.items()}
        if names and not c["calls"]:
            continue
        metrics = _metrics(c)
        if not with_percentiles:
            del metrics["p90_wait_seconds"], metrics["p90_talk_seconds"]
        result.append({"key": dict(zip(names, key, strict=True)), **metrics})
    result.sort(key=lambda g: [(v is None, v) for v in g["key"].values()])
    return result


def count_by(
    facts: Facts, name: str, tz: ZoneInfo, only: np.ndarray | None = None
) -> list[tuple[Any, int]]:
    """``(value, calls)`` for each value of one grouping that has calls, as ``aggregate``'s
    ``calls`` per group, among the calls ``only`` marks (all without it): one count, for
    charts that show nothing else (every metric of every group costs ten times more)."""
    group, labels = _groups(facts, (name,), tz)
    found = np.bincount(group if only is None else group[only], minlength=len(labels))
    counted = [(labels[i][0], int(found[i])) for i in np.flatnonzero(found)]
    return sorted(counted, key=lambda item: (item[0] is None, item[0]))  # as aggregate's keys


def _counts(group: np.ndarray, groups: int, flags: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """How many calls of each group have each flag (at most 8), in one pass over the calls.

    The flags are packed into one byte per call, and calls are counted per (group, byte);
    a flag's count is then the sum over the bytes that have its bit. One ``bincount`` instead
    of one per flag, which is most of a report's time over a million calls.
    """
    if groups * 256 > 1 << 22:  # too many bins: count each flag on its own
        return {k: np.bincount(group[f], minlength=groups).tolist() for k, f in flags.items()}
    packed = np.zeros(len(group), np.uint8)
    for bit, flag in enumerate(flags.values()):
        packed |= flag.view(np.uint8) << bit
    table = np.bincount(group * 256 + packed, minlength=groups * 256).reshape(groups, 256)
    patterns = np.arange(256)
    return {
        name: table[:, (patterns >> bit) & 1 == 1].sum(axis=1).tolist()
        for bit, name in enumerate(flags)
    }


def _metrics(c: dict[str, Any]) -> dict[str, Any]:
    """One group's metrics from its counts and sums (times in ms, money in micro-units)."""
    eligible = c["queued"] - c["short_abandoned"]
    talk = c["talk_sum"] / 1000
    cost = c["cost_sum"] / 1_000_000
    figures = {
        "calls": c["calls"],
        "answered": c["answered"],
        "queued": c["queued"],
        "abandoned": c["abandoned"],
        "short_abandoned": c["short_abandoned"],
        "answer_rate": _ratio(c["answered"], c["calls"]),
        "abandon_rate": _ratio(c["abandoned"] - c["short_abandoned"], eligible),
        "service_level": _ratio(c["within"], eligible),
        "asa_seconds": _ratio(c["soa_sum"] / 1000, c["soas"]),
        "avg_wait_seconds": _ratio(c["wait_sum"] / 1000, c["waits"]),
        "p90_wait_seconds": c.get("p90_wait"),
        "talk_seconds": talk,
        "avg_talk_seconds": _ratio(talk, c["talks"]),
        "p90_talk_seconds": c.get("p90_talk"),
        "avg_ring_seconds": _ratio(c["ring_sum"], c["rings"]),
        "cost_total": cost,
        "cost_per_answered_minute": _ratio(cost, talk / 60),
    }
    return {name: _rounded(value) for name, value in figures.items()}


def _rounded(value: Any) -> Any:
    """A float at :data:`FIGURE_DIGITS` places (``+ 0.0`` turns ``-0.0`` into ``0.0``)."""
    return round(value, FIGURE_DIGITS) + 0.0 if isinstance(value, float) else value


def _groups(
    facts: Facts, names: tuple[str, ...], tz: ZoneInfo
) -> tuple[np.ndarray, list[tuple[Any, ...]]]:
    """Each call's group number and each number's key (every combination, used or not)."""
    group = np.zeros(len(facts), np.int64)
    labels: list[tuple[Any, ...]] = [()]
    for name in names:
        words: list[Any]
        if name in TIME_GROUPS:
            codes, words = _time_codes(facts.arrays["start_ms"], name, tz)
        elif name in ("direction", "hangup_by"):
            codes, words = _small_codes(facts.arrays[name])
        else:
            column = _TEXT.get(name, name)
            codes, words = facts.arrays[column].astype(np.int64), facts.words[column]
        group = group * len(words) + codes
        labels = [(*key, word) for key in labels for word in words]
    return group, labels


def _compact(group: np.ndarray, size: int) -> tuple[np.ndarray, list[int]]:
    """Renumber groups to the ones that occur (a day x agent x intent grid is mostly empty)."""
    if size <= 1 << 22:
        used = np.flatnonzero(np.bincount(group, minlength=size))
        renumber = np.zeros(size, np.int64)
        renumber[used] = np.arange(len(used))
        return renumber[group], used.tolist()
    used, inverse = np.unique(group, return_inverse=True)
    return inverse.astype(np.int64), used.tolist()


def _small_codes(values: np.ndarray) -> tuple[np.ndarray, list[int | None]]:
    """Small integer attributes (-1: missing) as group codes."""
    shifted = values.astype(np.int64) + 1
    top = int(shifted.max()) if len(shifted) else 0
    return shifted, [None, *range(top)]


_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000


def _time_codes(
    start_ms: np.ndarray, unit: str, tz: ZoneInfo
) -> tuple[np.ndarray, list[str | None]]:
    """Each call's local time bucket (code 0: no start time), DST-correct, vectorised.

    Local time is UTC plus the zone's offset at that instant; offsets change only at the
    zone's transitions, which are found once for the whole range (see :func:`_offsets`).
    Hour keys carry the offset, so the two 01:00 hours of a night clocks go back stay apart.
    """
    has = start_ms != NULL
    codes = np.zeros(len(start_ms), np.int64)
    if not has.any():
        return codes, [None]
    utc = start_ms[has]
    offset = _offsets(utc, tz)
    local = utc + offset
    if unit == "hour":
        kinds = np.unique(offset)
        bucket = (local // _HOUR_MS) * len(kinds) + np.searchsorted(kinds, offset)
    else:
        bucket = local // _DAY_MS
        if unit == "week":  # ISO weeks, keyed by their Monday; 1970-01-01 was a Thursday
            bucket = (bucket + 3) // 7
    low = int(bucket.min())
    if int(bucket.max()) - low < 1 << 22:
        used = np.flatnonzero(np.bincount(bucket - low))
        renumber = np.zeros(int(used[-1]) + 1, np.int64)
        renumber[used] = np.arange(1, len(used) + 1)
        codes[has] = renumber[bucket - low]
    else:  # buckets far apart (one call in year 9999): no table the size of the span
        used, inverse = np.unique(bucket - low, return_inverse=True)
        codes[has] = inverse.reshape(-1) + 1
    labels = [_label(unit, int(b) + low, kinds if unit == "hour" else None) for b in used]
    if unit == "month":  # days to months: merge the day buckets of each month
        months = sorted(set(labels))
        remap = np.array([0, *(months.index(m) + 1 for m in labels)])
        return remap[codes], [None, *months]
    return codes, [None, *labels]


def _label(unit: str, bucket: int, kinds: np.ndarray | None) -> str:
    """A bucket's key. Calendar arithmetic on the day number, not ``datetime``: a stored start
    can be past year 9999 in the zone (an older version accepted up to 9999-12-31 UTC), and
    then keys it the ISO 8601 way for such years (``+10000-01-01``)."""
    if unit == "hour":
        assert kinds is not None
        hour, kind = divmod(bucket, len(kinds))
        day, clock = divmod(hour, 24)
        offset = zones.offset_text(int(kinds[kind]))
        return f"{_date(day)}T{clock:02d}:00{offset[:6]}"
    if unit == "week":
        return _date(bucket * 7 - 3)
    return _date(bucket) if unit == "day" else _date(bucket)[:-3]


def _date(days: int) -> str:
    """The proleptic Gregorian date ``days`` after 1970-01-01, ``YYYY-MM-DD`` (H. Hinnant's
    ``civil_from_days``); years outside 0 to 9999 get a sign and their digits."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+05d}"
    return f"{text}-{month:02d}-{day:02d}"


def _offsets(utc_ms: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """The zone's UTC offset in ms at each instant (an instant on a change has the new one)."""
    return zones.offsets_at(utc_ms, tz)
