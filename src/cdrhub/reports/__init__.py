"""Everything that reads calls back: queries, statistics, hourly rollups and exports.

``query`` turns filters into SQL and rows into the API's items; ``stats`` computes the
statistics of docs/metrics.md from hourly snapshots that ``rollup`` keeps (``columns`` holds
them as NumPy arrays, ``layout`` is their stored form, which the server's background refresh
writes without NumPy, ``zones`` the time-zone arithmetic both use; ``callfacts`` is one call's
facts, for the call detail and forwarded events); ``export`` streams CSV, JSON Lines
and Parquet, with ``csvsql`` formatting CSV inside the database; ``intervals``, ``agents`` and
``staffing`` are the planning reports (the 15/30/60-minute interval report, the agent report,
Erlang C staffing), built on ``stats``, run through ``planning`` and written by ``sheets``
(CSV, XLSX); ``wallboard`` is the TV view's today-and-last-hour figures. Nothing here writes a
call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdrhub.reports import (
        agents,
        callfacts,
        columns,
        csvsql,
        export,
        intervals,
        layout,
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
    "callfacts",
    "columns",
    "csvsql",
    "export",
    "intervals",
    "layout",
    "planning",
    "query",
    "rollup",
    "sheets",
    "staffing",
    "stats",
    "wallboard",
    "zones",
]

#: The names this package offers, and the module each comes from.
_NAMES = {
    "FILTERS": "query",
    "TZ_PARAM": "query",
    "CallFilter": "query",
    "Param": "query",
    "call_id_path": "query",
    "Facts": "columns",
    "FIGURE_DIGITS": "stats",
    "METRICS": "stats",
}
#: The modules: every other name of ``__all__``.
_MODULES = frozenset(__all__) - _NAMES.keys()


def __getattr__(name: str) -> Any:
    """Import a module, or the module a name comes from, when it is first asked for.

    Importing the package imports none of them: most need NumPy (15 MB), which the server
    needs only for a report; its background snapshot refresh needs ``rollup`` and ``layout``,
    which do without it.
    """
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
