"""How fast is the CSV export of every call, and what does it hold in memory?

Usage: python bench/export.py DATABASE_URL [--runs 3] [--tz Asia/Shanghai] [--baseline REF]
                              [--batch ROWS]

Each run is one full export to /dev/null through ``export.stream`` (what the API, the CLI
and the dashboard call) in a fresh child process. Its peak RSS is its ``VmHWM``; the
export's whole peak adds its SQLite worker processes, read every 20 ms from /proc as the sum
of the tree's ``VmRSS`` at the same moment (shared pages counted in each). In the
same run, interleaved (a slower minute of a shared machine hits every variant):

- ``sliced``: today's export, slices on 2 connections (``csvsql.WORKERS = 2``);
- ``1 connection``: the same SQL on one connection (``WORKERS = 1``);
- ``baseline``: the export as it was before this work, ``reports/csvsql.py`` of git
  ``REF`` (default 4963c62) loaded in place of today's.

Prints the median and each run as Markdown rows for BENCHMARKS.md, whether the sliced
and one-connection outputs were identical (SHA-256) in every run, and the CPU time of the
exporting process and its children (on SQLite all the formatting; on PostgreSQL only the
client's part, the server's backends are not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"sliced": "CSV export, 2 connections", "one": "same SQL, 1 connection",
            "baseline": "baseline: the export before (git {ref})"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tz", default="Asia/Shanghai")
    parser.add_argument("--baseline", default="4963c62", metavar="REF")
    parser.add_argument("--batch", type=int, help="rows per chunk (default: csvsql.BATCH)")
    parser.add_argument("--once", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.once:
        once(args.url, args.once, ZoneInfo(args.tz), args.baseline, args.batch)
        return
    results: dict[str, list[tuple[float, int, str, float, int]]] = {v: [] for v in VARIANTS}
    for _ in range(args.runs):
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, args.url, "--tz", args.tz, "--baseline",
                 args.baseline, "--once", variant,
                 *(["--batch", str(args.batch)] if args.batch else [])],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            results[variant].append(
                (float(out[0]), int(out[1]) // 1024, out[2], float(out[3]), int(out[4]) // 1024)
            )
    kind = args.url.split(":")[0].split("+")[0]
    for variant, label in VARIANTS.items():
        runs = results[variant]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        tree = max(r[4] for r in runs)
        each = ", ".join(f"{r[0]:.1f}" for r in runs)
        cpu = statistics.median(r[3] for r in runs)
        print(
            f"| {kind} | {label.format(ref=args.baseline)} | median {seconds:.1f} s "
            f"({each}) | peak RSS {peak} MB, with its workers {tree} MB | CPU {cpu:.1f} s |"
        )
    same = {r[2] for v in ("sliced", "one") for r in results[v]}
    print(f"sliced == one connection, every run: {len(same) == 1}")
    print(f"baseline bytes == today's: {same == {r[2] for r in results['baseline']}}")


def once(url: str, variant: str, tz: ZoneInfo, ref: str, batch: int | None) -> None:
    """One export to /dev/null: prints seconds, peak RSS in kB and the output's SHA-256."""
    from cdrhub.reports import csvsql, export, query
    from cdrhub.store import open_store

    if variant == "baseline":
        source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{ref}:src/cdrhub/reports/csvsql.py"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        path = Path(tempfile.mkdtemp()) / "csvsql_before.py"
        path.write_bytes(source)
        spec = importlib.util.spec_from_file_location("csvsql_before", path)
        assert spec is not None and spec.loader is not None
        before = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(before)
        export.csvsql = before  # type: ignore[attr-defined]
    else:
        csvsql.WORKERS = 2 if variant == "sliced" else 1
        csvsql.BATCH = batch or csvsql.BATCH
    store = open_store(url)
    tree = _TreePeak()
    tree.start()
    digest = hashlib.sha256()
    started = time.perf_counter()
    with open("/dev/null", "wb") as out:
        for chunk in export.stream(store, query.CallFilter(), "csv", tz):
            digest.update(chunk)
            out.write(chunk)
    seconds = time.perf_counter() - started
    tree.done.set()
    tree.join()
    peak = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    assert peak is not None
    used = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in used)  # SQLite's child processes included
    # The samples can miss this process's own peak between two reads; the tree held at least it.
    print(seconds, peak[1], digest.hexdigest(), cpu, max(tree.peak_kb, int(peak[1])))
    store.close()


class _TreePeak(threading.Thread):
    """The most RSS this process and its children (the SQLite workers) held at one moment."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.peak_kb = 0

    def run(self) -> None:
        while not self.done.wait(0.02):
            pids = [os.getpid(), *_children(os.getpid())]
            self.peak_kb = max(self.peak_kb, sum(_rss_kb(pid) for pid in pids))


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the child just ended
        return 0
    found = re.search(r"VmRSS:\s+(\d+)", status)
    return int(found[1]) if found else 0


if __name__ == "__main__":
    main()
