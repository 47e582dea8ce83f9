"""The three planning reports behind one call, and each as a flat table for files and screens.

The API, the CLI and the pages all call :func:`run` with the same parsed options, so
``/api/reports/staffing``, ``cdrhub report staffing`` and the Staffing page cannot disagree;
:func:`table` flattens a result into the header and rows that CSV, XLSX and the terminal show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from cdrhub.cdr import DIRECTIONS
from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.reports import agents, intervals, staffing
from cdrhub.reports.query import CallFilter
from cdrhub.store import Store

#: The reports, by the name the API path, the CLI and the pages use.
KINDS = ("intervals", "agents", "staffing")


@dataclass(frozen=True, slots=True)
class Options:
    """What a planning report takes besides the call filter (parsed, with defaults)."""

    tz: ZoneInfo
    sl_seconds: float
    short_abandon_seconds: float
    minutes: int = 30
    sl_target: float = staffing.DEFAULT_TARGET
    sort: tuple[str, bool] = ("handled", True)


def parse_options(
    raw: Mapping[str, str | None],
    *,
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
) -> Options:
    """``interval``, ``sl_target`` and ``sort`` from parameter strings (422s name them)."""
    return Options(
        tz=tz,
        sl_seconds=sl_seconds,
        short_abandon_seconds=short_abandon_seconds,
        minutes=intervals.parse_length(raw.get("interval")),
        sl_target=staffing.parse_target(raw.get("sl_target")),
        sort=agents.parse_sort(raw.get("sort")),
    )


def run(kind: str, store: Store, where: CallFilter, options: Options) -> dict[str, Any]:
    """One report's result (the API's JSON body), rounded as :func:`rounded` says."""
    return rounded(_run(kind, store, where, options))


#: Decimals kept, by column kind: seconds to the millisecond NXCC measures in; ratios,
#: erlangs and occupancy to 4 (0.1 of a percent point is the finest anyone plans with).
DECIMALS = {"seconds": 3, "ratio": 4, "erlangs": 4}


def rounded(value: Any, name: str = "") -> Any:
    """Floats rounded by their column's kind (no 21.470000000000002 in JSON or CSV)."""
    if isinstance(value, dict):
        return {k: rounded(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, name) for v in value]
    if isinstance(value, float):
        places = DECIMALS.get(KIND_OF.get(name, ""), 4 if name == "sl_target" else 3)
        return round(value, places)
    return value


def _run(kind: str, store: Store, where: CallFilter, options: Options) -> dict[str, Any]:
    common = {
        "tz": options.tz,
        "sl_seconds": options.sl_seconds,
        "short_abandon_seconds": options.short_abandon_seconds,
    }
    if kind == "agents":
        return agents.report(store, where, sort=options.sort, **common)
    if kind not in ("intervals", "staffing"):
        raise InvalidParameter(
            "unknown report", [FieldProblem("report", kind, "one of " + ", ".join(KINDS))]
        )
    result = intervals.report(store, where, minutes=options.minutes, **common)
    if kind == "intervals":
        return {"minutes": options.minutes, **result}
    return {"minutes": options.minutes, **staffing.from_intervals(
        result, options.sl_target, options.sl_seconds
    )}  # fmt: skip


#: How each column is formatted in files and on screen: count, seconds, ratio, erlangs, text.
KIND_OF: dict[str, str] = {
    **{c: "count" for c in ("offered", "answered", "queued", "abandoned", "short_abandoned",
                            "handled", "missed", "agents_needed")},
    **{c: "seconds" for c in ("asa_seconds", "aht_seconds", "talk_seconds",
                              "longest_wait_seconds", "avg_talk_seconds",
                              "expected_asa_seconds")},
    **{c: "ratio" for c in ("abandon_rate", "service_level", "answered_share",
                            "expected_service_level", "occupancy")},
    "traffic_erlangs": "erlangs",
    "minutes": "minutes",
}  # fmt: skip
_DIRECTION_NAMES = tuple(DIRECTIONS.values())


def table(kind: str, result: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """``(header, rows)`` of a result, for CSV, XLSX and the terminal (values unrounded)."""
    if kind == "agents":
        header = [*agents.COLUMNS]
        for name in _DIRECTION_NAMES:
            header += [f"{name.lower()}_handled", f"{name.lower()}_answered"]
        rows = []
        for row in result["agents"]:
            line = [row[c] for c in agents.COLUMNS]
            for name in _DIRECTION_NAMES:
                part = row["by_direction"].get(name, {})
                line += [part.get("handled", 0), part.get("answered", 0)]
            rows.append(line)
        return header, rows
    if kind == "staffing":
        header = list(staffing.COLUMNS)
        return header, [[row[c] for c in header] for row in result["intervals"]]
    header = ["start", "end", "minutes", *intervals.COLUMNS]
    return header, [[row[c] for c in header] for row in result["intervals"]]
