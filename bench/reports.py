"""How fast are the planning reports? The 30-day interval report (30-minute) and the 30-day
agent report on simulated calls, against the 300 ms goal.

Usage: python bench/reports.py DATABASE_URL [--runs N]
       python bench/reports.py --facts 1000000 [--runs N]
The database should hold the calls of ``cdrhub simulate --count 1000000 --end 2026-11-24
--days 60`` (``CDRHUB_TIMEZONE=Asia/Shanghai``), as bench/query.py uses. The process is set up
as ``cdrhub serve`` sets itself up (the snapshot cache, the allocator setting). Each report
runs once cold ("first": it builds any snapshot not built yet and fills the cache), then
``--runs`` times. The baseline, measured in the same run, is ``stats.compute`` over the same
30 days grouped by day (``/api/stats?group_by=day``), the nearest report that existed before:
the planning reports' cost over it is what they add. Prints Markdown rows for BENCHMARKS.md.

``--facts N`` times the reports' own arithmetic, without a database: N calls' facts (the
columns the hourly snapshots hold) drawn at random over 30 days with 60 agents, and the same
aggregation the database mode runs after reading them. It says what the reports add to the
snapshot read that bench/query.py measures, when loading a million calls is not possible.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

import numpy as np

from cdrhub.ops import memory
from cdrhub.reports import agents, intervals, planning, query, staffing, stats
from cdrhub.reports.columns import NULL, Facts
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


def synthetic(n: int) -> Facts:
    """``n`` calls over the 30 days from 2026-10-25 (Shanghai): 80 % queued, 70 % answered."""
    rng = np.random.default_rng(1)
    start = 1_792_857_600_000 + rng.integers(0, 30 * 86_400_000, n)
    queued = rng.random(n) < 0.8
    answered = rng.random(n) < 0.7
    wait = np.where(queued, rng.integers(0, 120_000, n), NULL)
    return Facts(
        {
            "start_ms": np.sort(start),
            "wait_ms": wait,
            "soa_ms": np.where(queued & answered, wait, NULL),
            "talk_ms": np.where(answered, rng.integers(5_000, 600_000, n), NULL),
            "ring": rng.integers(0, 30, n),
            "cost_micro": rng.integers(0, 2_000_000, n),
            "direction": rng.integers(0, 3, n).astype(np.int8),
            "hangup_by": rng.integers(0, 3, n).astype(np.int8),
            "answered": answered.astype(np.int8),
            "queued": queued.astype(np.int8),
            "has_recording": answered.astype(np.int8),
            "agent": rng.integers(0, 61, n).astype(np.int32),
        },
        {"agent": [None, *(f"agent{i:02d}@example.com" for i in range(60))]},
    )


def arithmetic(n: int, runs: int) -> None:
    """The reports' computation on ``n`` facts already in memory (see the module doc)."""
    facts = synthetic(n)
    month = query.parse_filters({"from": "2026-10-25", "to": "2026-11-24"}, TZ)
    grid = intervals.intervals(*intervals._bounds_ms(month), 30, TZ)
    options = {"tz": TZ, "sl_seconds": 20.0, "short_abandon_seconds": 5.0}
    fns: dict[str, Callable[[], object]] = {
        "interval report arithmetic (30 days, 30 min)": lambda: intervals.from_facts(
            facts, grid, **options
        ),
        "staffing arithmetic (1,440 intervals)": lambda: staffing.from_intervals(
            intervals.from_facts(facts, grid, **options), 0.8, 20
        ),
        "agent report arithmetic (60 agents)": lambda: (
            stats.aggregate(facts, ("agent",), with_percentiles=False, **options),
            stats.aggregate(facts, ("agent", "direction"), with_percentiles=False, **options),
            agents._extremes(facts.arrays["agent"].astype(np.int64), facts.arrays["start_ms"], 61),
        ),
        "baseline: stats by day arithmetic": lambda: stats.aggregate(
            facts, ("day",), with_percentiles=False, **options
        ),
    }
    for name, fn in fns.items():
        timed(fn, 1)
        samples = timed(fn, runs)
        print(f"| memory | {n:,} | {name} | median {statistics.median(samples):.0f} ms, "
              f"max {max(samples):.0f} ms | |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--facts", type=int, help="time the arithmetic on N synthetic calls")
    args = parser.parse_args()
    if args.facts:
        arithmetic(args.facts, args.runs)
        return
    if not args.url:
        parser.error("give a DATABASE_URL, or --facts N")
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
