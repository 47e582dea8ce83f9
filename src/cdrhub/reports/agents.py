"""The agent report: per agent (``agentName``) over a period, what each one handled.

The counts and talk times are ``stats.aggregate``'s, grouped by agent and by agent and
direction, so they are the numbers ``/api/stats?group_by=agent`` gives. Added here: missed
calls, each agent's share of all answered calls, and the first and last call's start.

"Missed" is a call NXCC put through to the agent that was not answered, outbound calls left
out: an outbound call the customer did not pick up is not the agent's miss.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from cdrhub.cdr import DIRECTIONS
from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.reports import stats
from cdrhub.reports.columns import NULL
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store

#: Each agent's figures, in the order the API, the CLI and the page show them.
COLUMNS = (
    "agent",
    "handled",
    "answered",
    "missed",
    "talk_seconds",
    "avg_talk_seconds",
    "answered_share",
    "first_call",
    "last_call",
)
#: What ``sort`` takes: any column (text and times sort as text, missing values last).
SORTS = COLUMNS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OUTBOUND = 1


def parse_sort(value: str | None) -> tuple[str, bool]:
    """``sort`` as (column, descending): ``-handled`` (the default) is most handled first."""
    text = (value or "-handled").strip()
    descending = text.startswith("-")
    name = text.lstrip("-+")
    if name not in SORTS:
        raise InvalidParameter(
            "invalid value for sort",
            [
                FieldProblem(
                    "sort", value, "a column, `-` first for descending: " + ", ".join(SORTS)
                )
            ],
        )
    return name, descending


def report(
    store: Store,
    where: CallFilter,
    *,
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
    sort: tuple[str, bool] = ("handled", True),
) -> dict[str, Any]:
    """``{"agents": [...], "answered_total": n}``: one row per agent who had calls; calls
    without an agent are not an agent's, and only count in ``answered_total``."""
    facts = stats.select_facts(store, where, ("agent",))
    options = {"tz": tz, "sl_seconds": sl_seconds, "short_abandon_seconds": short_abandon_seconds}
    per_agent = stats.aggregate(facts, ("agent",), with_percentiles=False, **options)
    per_direction = stats.aggregate(
        facts, ("agent", "direction"), with_percentiles=False, **options
    )
    answered_total = int(facts.arrays["answered"].sum()) if len(facts) else 0
    codes = facts.arrays["agent"].astype(np.int64)
    words = facts.words["agent"]
    first, last = _extremes(codes, facts.arrays["start_ms"], len(words))
    code_of = {w: i for i, w in enumerate(words)}
    directions: dict[str, dict[str, dict[str, int]]] = {}
    missed: dict[str, int] = {}
    for g in per_direction:
        agent, direction = g["key"]["agent"], g["key"]["direction"]
        if agent is None:
            continue
        name = DIRECTIONS.get(direction, "unknown") if direction is not None else "unknown"
        directions.setdefault(agent, {})[name] = {
            "handled": g["calls"],
            "answered": g["answered"],
        }
        if direction != _OUTBOUND:
            missed[agent] = missed.get(agent, 0) + g["calls"] - g["answered"]
    rows = []
    for g in per_agent:
        agent = g["key"]["agent"]
        if agent is None:
            continue
        code = code_of[agent]
        rows.append(
            {
                "agent": agent,
                "handled": g["calls"],
                "answered": g["answered"],
                "missed": missed.get(agent, 0),
                "talk_seconds": g["talk_seconds"],
                "avg_talk_seconds": g["avg_talk_seconds"],
                "answered_share": g["answered"] / answered_total if answered_total else None,
                "first_call": _iso(first[code], tz),
                "last_call": _iso(last[code], tz),
                "by_direction": directions.get(agent, {}),
            }
        )
    name, descending = sort
    present = [r for r in rows if r[name] is not None]
    absent = [r for r in rows if r[name] is None]
    present.sort(key=lambda r: (r[name], r["agent"]), reverse=descending)
    return {"agents": present + absent, "answered_total": answered_total}


def _extremes(codes: np.ndarray, start_ms: np.ndarray, size: int) -> tuple[list[int], list[int]]:
    """The earliest and latest known start per agent code (:data:`NULL` when none)."""
    known = start_ms != NULL
    low = np.full(size, np.iinfo(np.int64).max, np.int64)
    high = np.full(size, NULL, np.int64)
    np.minimum.at(low, codes[known], start_ms[known])
    np.maximum.at(high, codes[known], start_ms[known])
    return low.tolist(), high.tolist()


def _iso(ms: int, tz: ZoneInfo) -> str | None:
    if ms in (NULL, np.iinfo(np.int64).max):
        return None
    try:
        return (_EPOCH + timedelta(milliseconds=ms)).astimezone(tz).isoformat(timespec="seconds")
    except OverflowError:
        return None
