"""How fast are the read paths? Page, stats and export timings on simulated calls.

Usage: python bench/query.py DATABASE_URL [--count N]  (simulates N calls first if the
database is empty). Prints one Markdown row per measurement for BENCHMARKS.md.

The process is set up as ``cdrhub serve`` sets itself up (the snapshot cache and the
allocator setting from the default settings), and each figure comes with a baseline measured
in the same run: statistics from a plain scan of the calls table, and the CSV export as
Python formatted it before the database did (csv module over the driver's rows).
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Boolean, select

from cdrhub.ops import memory
from cdrhub.reports import columns, export, query, stats, zones
from cdrhub.settings import Settings
from cdrhub.store import Store, open_store, schema

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
    parser.add_argument("--export-only", choices=("database", "python"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_only:
        export_once(args.url, args.export_only)
        return
    defaults = Settings(database_url=args.url)
    memory.keep_freed_memory(defaults.keep_freed_memory_mb)
    store = open_store(args.url, fact_cache_bytes=defaults.stats_cache_mb * 2**20)
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

    first_day = timed(daily, 1)[0]  # builds unread hours, fills the cache: a cold start
    day_runs = timed(daily, 20)
    first_agent = timed(by_agent, 1)[0]
    agent_runs = timed(by_agent, 10)
    scan_day = timed(lambda: scan(month, ("day",)), 3)
    scan_agent = timed(lambda: scan(query.CallFilter(), ("agent",)), 3)
    exports = {
        which: subprocess.run(
            [sys.executable, __file__, args.url, "--export-only", which],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for which in ("database", "python")
    }
    kind = store.kind
    print(f"| {kind} | {n:,} | filtered page of 50, p95 | {p95(page):.1f} ms | < 20 ms |")
    med = statistics.median
    print(
        f"| {kind} | {n:,} | 30-day daily stats (every metric) | median {med(day_runs):.0f} ms, "
        f"p95 {p95(day_runs):.0f} ms (first {first_day:.0f} ms) | p95 < 100 ms |"
    )
    print(
        f"| {kind} | {n:,} | full-range stats by agent | median {med(agent_runs):.0f} ms, "
        f"p95 {p95(agent_runs):.0f} ms (first {first_agent:.0f} ms) | < 300 ms |"
    )
    print(
        f"| {kind} | {n:,} | baseline: same reports from a table scan | daily median "
        f"{med(scan_day):.0f} ms ({med(scan_day) / med(day_runs):.1f}x), by agent "
        f"{med(scan_agent):.0f} ms ({med(scan_agent) / med(agent_runs):.1f}x) | |"
    )
    seconds, peak = float(exports["database"][0]), int(exports["database"][1]) // 1024
    old_seconds, old_peak = float(exports["python"][0]), int(exports["python"][1]) // 1024
    print(
        f"| {kind} | {n:,} | CSV export of all calls | {seconds:.1f} s, "
        f"peak RSS {peak} MB | < 10 s, < 150 MB |"
    )
    print(
        f"| {kind} | {n:,} | baseline: the export formatted in Python | {old_seconds:.1f} s "
        f"({old_seconds / seconds:.1f}x), peak RSS {old_peak} MB | |"
    )
    store.close()


def export_once(url: str, which: str) -> None:
    """One full CSV export to /dev/null in this process: prints seconds and peak RSS in kB.

    Peak memory comes from /proc/self/status (VmHWM): ru_maxrss would carry over the forking
    parent's peak across exec, and the parent holds a million calls' facts.
    """
    store = open_store(url)
    tz = ZoneInfo("UTC")
    started = time.perf_counter()
    if which == "database":
        chunks = export.stream(store, query.CallFilter(), "csv", tz)
    else:
        chunks = _python_csv(store, tz)
    with open("/dev/null", "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    status = Path("/proc/self/status").read_text()
    peak = re.search(r"VmHWM:\s+(\d+)", status)
    assert peak is not None
    print(time.perf_counter() - started, peak[1])


def _python_csv(store: Store, tz: ZoneInfo) -> Iterator[bytes]:
    """The baseline: CSV as cdrhub wrote it before the database formatted it (the csv module
    over the driver's rows, a comprehension per column, times through ``zones.iso_times``)."""
    iso = zones.iso_times(tz)
    formula = ("=", "+", "-", "@", "\t", "\r")
    kinds = []
    for column in schema.calls.columns:
        if isinstance(column.type, schema.UTCDateTime):
            kinds.append("time")
        elif column.type.python_type is str and not isinstance(column.type, Boolean):
            kinds.append("text")
        else:
            kinds.append("other")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for batch in query.iter_calls(store, query.CallFilter()):
        buffer.seek(0)
        buffer.truncate()
        cells = []
        for kind, values in zip(kinds, zip(*batch, strict=True), strict=True):
            if kind == "time":
                cells.append(["" if v is None else iso(v) for v in values])
            elif kind == "text":
                cells.append(
                    ["" if v is None else "'" + v if v.startswith(formula) else v for v in values]
                )
            else:
                cells.append(["" if v is None else v for v in values])
        writer.writerows(zip(*cells, strict=True))
        yield buffer.getvalue().encode()


if __name__ == "__main__":
    main()
