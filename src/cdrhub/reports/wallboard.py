"""The wallboard's figures: today so far and the last hour by quarter, in one cheap read.

Every figure is a metric of docs/metrics.md computed by :func:`stats.aggregate` over the facts
:func:`stats.select_facts` selects, the functions ``/api/stats`` uses, so the TV on the floor
and ``/api/stats?from=<midnight>&to=<next midnight>`` cannot disagree. The one figure that is
not a metric there, ``longest_wait_seconds``, is the largest per-call *wait* (the fact of
docs/metrics.md) among the period's queued calls with a known wait.

One load covers both views (today's hours, plus the hour before midnight early in the day);
the hourly snapshots it reads are cached per process, so a refresh is milliseconds even on
a million calls (bench/wall.py).

``alerts`` is left empty here: alert rules live a layer above the reports, so the wallboard's
page (``cdrhub.web.wall``) fills it with the rules firing now.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from cdrhub.reports import stats
from cdrhub.reports.columns import NULL, Facts
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store

#: The figures of each period, in the order the wallboard shows them.
FIGURES: tuple[str, ...] = (
    "calls",
    "answered",
    "abandoned",
    "service_level",
    "asa_seconds",
    "longest_wait_seconds",
)
#: The last hour, in quarters (the current, unfinished quarter last).
QUARTER = timedelta(minutes=15)
QUARTERS = 4


def figures(
    store: Store,
    *,
    tz: ZoneInfo,
    sl_seconds: float,
    sl_target: float,
    short_abandon_seconds: float,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The wallboard's JSON: ``today``, ``last_hour`` (four quarters), ``alerts`` (``[]``)."""
    moment = (now or datetime.now(UTC)).astimezone(tz)
    day_start = datetime.combine(moment.date(), time(), tz)
    day_end = datetime.combine(moment.date() + timedelta(days=1), time(), tz)
    current = _quarter_start(moment, tz)
    quarters = [current - QUARTER * i for i in range(QUARTERS - 1, -1, -1)]
    first = min(day_start, quarters[0])
    facts = stats.select_facts(store, CallFilter(start=first, end=day_end))
    start_ms = facts.arrays["start_ms"]

    def period(start: datetime, end: datetime) -> dict[str, Any]:
        keep = (start_ms >= _ms(start)) & (start_ms < _ms(end))
        chosen = Facts({k: v[keep] for k, v in facts.arrays.items()}, facts.words)
        total = stats.aggregate(
            chosen,
            (),
            tz=tz,
            sl_seconds=sl_seconds,
            short_abandon_seconds=short_abandon_seconds,
            with_percentiles=False,
        )[0]
        return {
            "from": start.isoformat(),
            "to": end.isoformat(),
            **{name: total[name] for name in FIGURES if name in total},
            "longest_wait_seconds": _longest_wait(chosen),
        }

    return {
        "generated_at": moment.isoformat(),
        "zone": tz.key,
        "sl_seconds": sl_seconds,
        "sl_target": sl_target,
        "short_abandon_seconds": short_abandon_seconds,
        "today": period(day_start, day_end),
        "last_hour": [period(q, q + QUARTER) for q in quarters],
        "alerts": [],  # filled by cdrhub.web.wall: the alerts package is a layer above
    }


def _quarter_start(moment: datetime, tz: ZoneInfo) -> datetime:
    """The local quarter hour ``moment`` is in (every zone's offset is whole quarter hours)."""
    floored = moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)
    return floored.astimezone(UTC).astimezone(tz)


def _longest_wait(facts: Facts) -> float | None:
    """The largest known wait of a queued call, in seconds (None: no such call)."""
    a = facts.arrays
    waits = a["wait_ms"][(a["queued"] == 1) & (a["wait_ms"] != NULL)]
    return float(np.max(waits)) / 1000 if len(waits) else None


def _ms(moment: datetime) -> int:
    """A bound in epoch ms as ``stats`` compares it (whole ms here: quarters and midnights)."""
    return int(moment.timestamp() * 1000)
