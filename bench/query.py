"""How fast are the read paths? Page, stats and export timings on simulated calls.

Usage: python bench/query.py DATABASE_URL [--count N]  (simulates N calls first if the
database is empty). Prints one Markdown row per measurement for bench/QUERY_RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cdrhub import columns, query, stats
from cdrhub.store import open_store

TZ = ZoneInfo("Asia/Shanghai")


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


def timed(fn: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    store = open_store(args.url)
    store.upgrade()
    if store.count_calls() == 0:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cdrhub", "simulate", "--count", str(args.count),
             "--end", "2026-11-24", "--days", "60", "--database-url", args.url],
            check=True, env={"CDRHUB_TIMEZONE": "Asia/Shanghai", "PATH": ""},
        )  # fmt: skip
        print(f"simulated {args.count} calls in {time.perf_counter() - t:.0f} s")
    n = store.count_calls()
    page_filter = query.parse_filters(
        {"from": "2026-11-01", "to": "2026-11-24", "direction": "0", "answered": "false"}, TZ
    )
    page = timed(lambda: query.list_calls(store, page_filter, TZ, limit=50), 50)
    month = query.parse_filters({"from": "2026-10-25", "to": "2026-11-24"}, TZ)

    def daily() -> None:
        stats.compute(
            store, month, group_by=("day",), tz=TZ, sl_seconds=20, short_abandon_seconds=5
        )

    def by_agent() -> None:
        stats.compute(
            store,
            query.CallFilter(),
            group_by=("agent",),
            tz=TZ,
            sl_seconds=20,
            short_abandon_seconds=5,
        )

    def scan(where: query.CallFilter, group_by: tuple[str, ...]) -> None:
        """Baseline: the same report computed from a scan of the calls table, no snapshots."""
        with store.read_engine.connect() as conn:
            rows = conn.execute(select(*columns.SOURCE).where(*where.conditions())).all()
        stats.aggregate(
            columns.from_rows(rows), group_by, tz=TZ, sl_seconds=20, short_abandon_seconds=5
        )

    daily()  # the first report after a load may build the hours nobody has read yet
    day_runs = timed(daily, 20)
    agent_runs = timed(by_agent, 10)
    scan_day = timed(lambda: scan(month, ("day",)), 3)
    scan_agent = timed(lambda: scan(query.CallFilter(), ("agent",)), 3)
    export = subprocess.run(
        [sys.executable, "-c", _EXPORT, args.url], check=True, capture_output=True, text=True
    ).stdout.split()
    kind = store.kind
    print(f"| {kind} | {n:,} | filtered page of 50, p95 | {p95(page):.1f} ms | < 20 ms |")
    med = statistics.median
    print(
        f"| {kind} | {n:,} | 30-day daily stats (every metric) | median {med(day_runs):.0f} ms, "
        f"p95 {p95(day_runs):.0f} ms | p95 < 100 ms |"
    )
    print(
        f"| {kind} | {n:,} | full-range stats by agent | median {med(agent_runs):.0f} ms, "
        f"p95 {p95(agent_runs):.0f} ms | < 300 ms |"
    )
    print(
        f"| {kind} | {n:,} | baseline: same reports from a table scan | daily median "
        f"{med(scan_day):.0f} ms ({med(scan_day) / med(day_runs):.1f}x), by agent "
        f"{med(scan_agent):.0f} ms ({med(scan_agent) / med(agent_runs):.1f}x) | |"
    )
    print(
        f"| {kind} | {n:,} | CSV export of all calls | {float(export[0]):.1f} s, "
        f"peak RSS {int(export[1]) // 1024} MB | < 10 s, < 150 MB |"
    )
    store.close()


# Peak memory from /proc/self/status (VmHWM): ru_maxrss would carry over the forking
# parent's peak across exec, and this script's parent holds a million calls' facts.
_EXPORT = """
import re, sys, time
from zoneinfo import ZoneInfo
from cdrhub import export, query
from cdrhub.store import open_store
store = open_store(sys.argv[1])
t = time.perf_counter()
with open('/dev/null', 'wb') as out:
    for chunk in export.export(query.iter_calls(store, query.CallFilter()), 'csv', ZoneInfo('UTC')):
        out.write(chunk)
peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)
print(time.perf_counter() - t, peak)
"""

if __name__ == "__main__":
    main()
