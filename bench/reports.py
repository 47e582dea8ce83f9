"""How fast are the planning reports? The 30-day interval report (30-minute) and the 30-day
agent report on simulated calls, against the 300 ms goal.

Usage: python bench/reports.py DATABASE_URL [--runs N]
The database should hold the calls of ``cdrhub simulate --count 1000000 --end 2026-11-24
--days 60`` (``CDRHUB_TIMEZONE=Asia/Shanghai``), as bench/query.py uses. The process is set up
as ``cdrhub serve`` sets itself up (the snapshot cache, the allocator setting). Each report
runs once cold ("first": it builds any snapshot not built yet and fills the cache), then
``--runs`` times. The baseline, measured in the same run, is ``stats.compute`` over the same
30 days grouped by day (``/api/stats?group_by=day``), the nearest report that existed before:
the planning reports' cost over it is what they add. Prints Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from cdrhub.ops import memory
from cdrhub.reports import planning, query, stats
from cdrhub.settings import Settings
from cdrhub.store import open_store

TZ = ZoneInfo("Asia/Shanghai")


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    defaults = Settings(database_url=args.url)
    memory.keep_freed_memory(defaults.keep_freed_memory_mb)
    store = open_store(args.url, fact_cache_bytes=defaults.stats_cache_mb * 2**20)
    n = store.count_calls()
    month = query.parse_filters({"from": "2026-10-25", "to": "2026-11-24"}, TZ)
    options = planning.Options(tz=TZ, sl_seconds=20, short_abandon_seconds=5, minutes=30)
    kind = store.kind

    def baseline() -> None:
        stats.compute(store, month, group_by=("day",), tz=TZ, sl_seconds=20,
                      short_abandon_seconds=5)  # fmt: skip

    reports = {
        "30-day interval report (30 min, 1,440 intervals)": lambda: planning.run(
            "intervals", store, month, options
        ),
        "30-day staffing (Erlang C per interval)": lambda: planning.run(
            "staffing", store, month, options
        ),
        "30-day agent report": lambda: planning.run("agents", store, month, options),
        "baseline: 30-day stats by day": baseline,
    }
    check = planning.run("intervals", store, month, options)
    assert len(check["intervals"]) == 30 * 48, len(check["intervals"])
    for name, fn in reports.items():
        first = timed(fn, 1)[0]
        samples = timed(fn, args.runs)
        median = statistics.median(samples)
        worst = max(samples)
        print(f"| {kind} | {n:,} | {name} | median {median:.0f} ms, max {worst:.0f} ms "
              f"(first {first:.0f} ms) | < 300 ms |")  # fmt: skip
    store.close()


if __name__ == "__main__":
    main()
