"""Which thread of a running cdrhub spends the CPU of a push?

Loads a server that is already running with wrk and bench/push.lua, and reads every thread's
CPU time (user and system, from /proc) before and after: the split a profiler's samples only
estimate. Pass the server's pid; its child processes (the journal's applier, workers) are
found and counted too:

    CDRHUB_JOURNAL=true CDRHUB_TOKENS=bench-token-0123456789 cdrhub serve --port 8765 &
    python bench/threads.py --port 8765 $(pgrep -f "cdrhub serve")

Linux only (/proc). Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import family, wrk  # bench/ is not a package: run.py is found by the path above

TICK = os.sysconf("SC_CLK_TCK")


def cpu_by_thread(pids: list[int]) -> dict[tuple[int, int, str], tuple[float, float]]:
    """(pid, tid, name) -> (user, system) seconds, for every thread of these processes."""
    seen: dict[tuple[int, int, str], tuple[float, float]] = {}
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue  # the thread ended between listing and reading
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            seen[(pid, int(tid), name)] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int, help="the server's pid (its children are found)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    args = parser.parse_args()
    pids = family(args.pid)
    before = cpu_by_thread(pids)
    result = wrk(args.port, args.duration, args.connections, threads=1)
    after = cpu_by_thread(pids)
    pushes = max(1, int(result["requests"]))
    print(f"{pushes / args.duration:,.0f} pushes/s, p99 {result['p99_ms']:.1f} ms, "
          f"{result['non2xx']} not 200")  # fmt: skip
    print("| process | thread | CPU s | share of a core | us/push (user + system) |")
    print("|---|---|---:|---:|---:|")
    total = 0.0
    for key in sorted(after):
        user0, system0 = before.get(key, (0.0, 0.0))
        user, system = after[key][0] - user0, after[key][1] - system0
        spent = user + system
        total += spent
        if spent >= 0.01 * args.duration:  # threads that did next to nothing are left out
            pid, tid, name = key
            print(f"| {pid} | {name} ({tid}) | {spent:.2f} | {spent / args.duration:.0%} | "
                  f"{spent / pushes * 1e6:.0f} ({user / pushes * 1e6:.0f} + "
                  f"{system / pushes * 1e6:.0f}) |")  # fmt: skip
    print(f"| all | | {total:.2f} | {total / args.duration:.0%} | {total / pushes * 1e6:.0f} |")


if __name__ == "__main__":
    main()
