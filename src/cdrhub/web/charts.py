"""Charts as plain data: the specs ``static/js/charts.js`` draws with uPlot, and the rows of
the tables that show the same figures as text (screen readers, a browser without JavaScript).

The time charts' specs (:func:`volume_spec`, :func:`service_spec`) are embedded in the page as
JSON data islands (``<script type="application/json">``, escaped by Jinja's ``tojson``) and
read back with ``JSON.parse``: call data never becomes markup on the way to a chart.
:func:`bars` feeds the horizontal bars (hangup reasons, AICC tasks and intents).

The time charts are time axes: :func:`buckets` lists every hour, day or month of the period
in the call center's zone, and a bucket without calls is drawn empty, never left out (the
statistics return only the buckets that have calls, and two bars a night apart must not
stand side by side).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

#: Step (ms) when walking a period for its hours: no zone's offset is finer (e.g. +05:45).
_STEP_MS = 15 * 60_000
_NO_CALLS = {"calls": 0, "answered": 0, "abandoned": 0, "service_level": None}


def buckets(start: datetime, end: datetime, unit: str, zone: ZoneInfo) -> list[str]:
    """The key of every ``unit`` bucket in ``[start, end)``, as ``/api/stats`` names them.

    ``start`` and ``end`` are local midnights in ``zone``. Hour keys carry the UTC offset, so
    the night clocks go back has 25 of them and the night they go forward 23.
    """
    if unit == "hour":
        # Walked in UTC: adding to a zoned datetime moves its wall clock, which would step
        # over the second 01:00 of the night clocks go back. (Imported here, not with the
        # pages: the statistics load NumPy, 15 MB, which a server needs for no push.)
        from cdrhub.reports import stats

        key = stats.bucketer("hour", zone)
        keys: dict[str, None] = {}
        ms, last = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        while ms < last:
            found = key(ms)
            assert found is not None
            keys[found] = None
            ms += _STEP_MS
        return list(keys)
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    if unit == "day":
        return [day.isoformat() for day in days]
    return list(dict.fromkeys(_month(day) for day in days))


def _month(day: date) -> str:
    return day.isoformat()[:7]  # as stats keys months (strftime does not pad years < 1000)


def unit_for(start: datetime, end: datetime) -> str:
    """Hours for a day or two, days up to about three months, months beyond."""
    span = end - start
    if span <= timedelta(days=2):
        return "hour"
    return "day" if span <= timedelta(days=92) else "month"


def _label(key: str, unit: str) -> str:
    if unit == "hour":
        return key[11:16]
    return key[5:10] if unit == "day" else key


def _thin(bars: list[dict[str, Any]], most: int = 8) -> list[dict[str, Any]]:
    """Keep every n-th axis label so at most ``most`` show: each label sits under its own
    bar, and a phone-wide chart has room for about eight (24 hours would overlap)."""
    step = max(1, -(-len(bars) // most))
    for i, bar in enumerate(bars):
        if i % step:
            bar["label"] = ""
    return bars


def _by_key(groups: list[dict[str, Any]], unit: str) -> dict[str, dict[str, Any]]:
    return {g["key"][unit]: g for g in groups if g["key"][unit] is not None}


def volume(groups: list[dict[str, Any]], unit: str, keys: list[str]) -> list[dict[str, Any]]:
    """Per time bucket of ``keys``: answered, unanswered (not abandoned) and abandoned,
    stacked; buckets without calls are bars of height 0."""
    found = _by_key(groups, unit)
    top = max((g["calls"] for g in found.values()), default=0) or 1
    out = []
    for key in keys:
        g = found.get(key, _NO_CALLS)
        unanswered = g["calls"] - g["answered"] - g["abandoned"]
        out.append(
            {
                "key": key,
                "label": _label(key, unit),
                "title": f"{key}: {g['calls']}",
                "answered": 100 * g["answered"] / top,
                "unanswered": 100 * unanswered / top,
                "abandoned": 100 * g["abandoned"] / top,
                "calls": g["calls"],
                "answered_calls": g["answered"],
                "unanswered_calls": unanswered,
                "abandoned_calls": g["abandoned"],
            }
        )
    return _thin(out)


def service_level(groups: list[dict[str, Any]], unit: str, keys: list[str]) -> list[dict[str, Any]]:
    """Per time bucket of ``keys``: the service level as a bar of 0-100%.

    A bucket with no queued call has no service level: it is a gap (``level`` None), not 0%,
    which would read as a bucket where every caller waited too long.
    """
    found = _by_key(groups, unit)
    out = []
    for key in keys:
        level = found.get(key, _NO_CALLS)["service_level"]
        out.append(
            {
                "key": key,
                "label": _label(key, unit),
                "title": f"{key}: {'–' if level is None else f'{level * 100:.1f}%'}",
                "level": level,
                "height": 0 if level is None else 100 * level,
            }
        )
    return _thin(out)


#: An id (AICC task ids are 19 digits) differs from its neighbours at the end: shortened in
#: the middle, never cut at the end, where an ellipsis would make every row read the same.
_ID = re.compile(r"(?=.*[0-9])[0-9A-Za-z_-]{17,}")


def short(label: str) -> str:
    """The text a narrow column shows for ``label`` (the full text goes in its title): long
    ids keep their head and tail; other text is left to CSS's end ellipsis."""
    if _ID.fullmatch(label):
        return f"{label[:4]}…{label[-7:]}"
    return label


def bars(items: list[tuple[Any, int]]) -> list[dict[str, Any]]:
    """Horizontal bars, biggest first (widths in percent of the biggest)."""
    ordered = sorted(items, key=lambda item: -item[1])[:12]
    top = max((n for _, n in ordered), default=0) or 1
    return [
        {
            "label": label or "–",
            "short": short(str(label or "–")),
            "count": n,
            "width": 100 * n / top,
        }
        for label, n in ordered
    ]


#: Series colours, the same as app.css's --ok, --warn, --bad and --accent.
COLOURS = {"answered": "#2e8b57", "unanswered": "#d98c1f", "abandoned": "#c0392b",
           "service": "#2f6db3"}  # fmt: skip


def starts(keys: list[str], unit: str, zone: ZoneInfo) -> list[int]:
    """Each bucket's start as Unix seconds: hour keys carry their offset, day and month keys
    are local midnights in ``zone`` (so a DST day is 23 or 25 hours wide on the axis)."""
    out = []
    for key in keys:
        if unit == "hour":
            at = datetime.fromisoformat(key)
        else:
            day = date.fromisoformat(key if unit == "day" else f"{key}-01")
            at = datetime.combine(day, datetime.min.time(), zone)
        out.append(int(at.timestamp()))
    return out


def volume_spec(
    rows: list[dict[str, Any]], unit: str, zone: ZoneInfo, text: dict[str, str]
) -> dict[str, Any]:
    """The stacked volume chart for charts.js from :func:`volume`'s rows: answered on top of
    unanswered on top of abandoned, counted exactly as ``/api/stats`` counts them."""
    keys = [r["key"] for r in rows]
    series = [("answered", "answered_calls"), ("unanswered", "unanswered_calls"),
              ("abandoned", "abandoned_calls")]  # fmt: skip
    return {
        "kind": "bars",
        "zone": str(zone),
        "unit": unit,
        "x": starts(keys, unit, zone),
        "keys": keys,
        "stacked": True,
        "format": "count",
        "target": None,
        "series": [
            {"label": text[name], "color": COLOURS[name], "values": [r[field] for r in rows]}
            for name, field in series
        ],
        "text": text,
    }


def service_spec(
    rows: list[dict[str, Any]], unit: str, zone: ZoneInfo, target: float, text: dict[str, str]
) -> dict[str, Any]:
    """The service level per bucket (0..1, a gap where no call queued) with the configured
    target as a line."""
    keys = [r["key"] for r in rows]
    return {
        "kind": "bars",
        "zone": str(zone),
        "unit": unit,
        "x": starts(keys, unit, zone),
        "keys": keys,
        "stacked": False,
        "format": "percent",
        "target": target,
        "series": [
            {
                "label": text["service"],
                "color": COLOURS["service"],
                "values": [r["level"] for r in rows],
            }
        ],
        "text": text,
    }
