"""How fast is the CSV export of every call, and what does it hold in memory?

Usage: python bench/export.py DATABASE_URL [--runs 3] [--tz Asia/Shanghai]

Each run is one full export to /dev/null through ``export.stream`` (what the API, the CLI
and the dashboard call) in a fresh child process, whose peak RSS is its ``VmHWM``. The
**baseline**, in the same run and interleaved with it: the export as cdrhub ran it before
it sliced the work (one connection, one query: ``workers=1``, the SQL unchanged). Prints
the median of the runs and each run, as Markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tz", default="Asia/Shanghai")
    parser.add_argument("--once", type=int, metavar="WORKERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once is not None:
        once(args.url, args.once, ZoneInfo(args.tz))
        return
    results: dict[int, list[tuple[float, int, str]]] = {1: [], 2: []}
    for _ in range(args.runs):
        for workers in (2, 1):  # interleaved: a slower minute of the machine hits both
            out = subprocess.run(
                [sys.executable, __file__, args.url, "--tz", args.tz, "--once", str(workers)],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            results[workers].append((float(out[0]), int(out[1]) // 1024, out[2]))
    digests = {r[2] for rs in results.values() for r in rs}
    kind = args.url.split(":")[0]
    for workers, label in ((2, "CSV export, 2 connections"), (1, "baseline: 1 connection")):
        runs = results[workers]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        each = ", ".join(f"{r[0]:.1f}" for r in runs)
        print(f"| {kind} | {label} | median {seconds:.1f} s ({each}) | peak RSS {peak} MB |")
    print(f"identical output in every run: {len(digests) == 1} (sha256 {min(digests)[:16]})")


def once(url: str, workers: int, tz: ZoneInfo) -> None:
    """One export to /dev/null: prints seconds, peak RSS in kB and the output's SHA-256."""
    from cdrhub.reports import csvsql, export, query
    from cdrhub.store import open_store

    csvsql.WORKERS = workers
    store = open_store(url)
    digest = hashlib.sha256()
    started = time.perf_counter()
    with open("/dev/null", "wb") as out:
        for chunk in export.stream(store, query.CallFilter(), "csv", tz):
            digest.update(chunk)
            out.write(chunk)
    seconds = time.perf_counter() - started
    peak = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    assert peak is not None
    print(seconds, peak[1], digest.hexdigest())
    store.close()


if __name__ == "__main__":
    main()
