"""Everything that reads calls back: queries, statistics, hourly rollups and exports.

``query`` turns filters into SQL and rows into the API's items; ``stats`` computes the
statistics of docs/metrics.md from hourly snapshots that ``rollup`` keeps (``columns`` is their
column layout, ``zones`` the time-zone arithmetic both use); ``export`` streams CSV, JSON Lines
and Parquet, with ``csvsql`` formatting CSV inside the database; ``intervals``, ``agents`` and
``staffing`` are the planning reports (the 15/30/60-minute interval report, the agent report,
Erlang C staffing), built on ``stats``, run through ``planning`` and written by ``sheets``
(CSV, XLSX); ``wallboard`` is the TV view's today-and-last-hour figures. Nothing here writes a
call.
"""

from cdrhub.reports import (
    agents,
    columns,
    csvsql,
    export,
    intervals,
    planning,
    query,
    rollup,
    sheets,
    staffing,
    stats,
    wallboard,
    zones,
)
from cdrhub.reports.columns import Facts
from cdrhub.reports.query import FILTERS, TZ_PARAM, CallFilter, Param, call_id_path
from cdrhub.reports.stats import FIGURE_DIGITS, METRICS

__all__ = [
    "FILTERS",
    "FIGURE_DIGITS",
    "METRICS",
    "TZ_PARAM",
    "CallFilter",
    "Facts",
    "Param",
    "agents",
    "call_id_path",
    "columns",
    "csvsql",
    "export",
    "intervals",
    "planning",
    "query",
    "rollup",
    "sheets",
    "staffing",
    "stats",
    "wallboard",
    "zones",
]
