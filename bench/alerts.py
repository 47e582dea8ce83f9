"""What does evaluating every alert rule cost? 20 rules of every kind on a big database.

Usage: python bench/alerts.py DATABASE_URL [--count N] [--runs R]  (simulates N calls, default
1,000,000 over the 60 days up to tomorrow, if the database is empty). Prints Markdown rows for
BENCHMARKS.md: the median of R evaluations of all rules in steady state (no transition, so
nothing is sent: sending is the targets' time, not ours), the first evaluation (snapshots of
unread hours built), and a baseline measured in the same run: one /api/stats figure of the
last 24 hours, as the dashboard's overview asks for it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete

from cdrhub.alerts import Evaluator, Sources, rules
from cdrhub.ops import memory
from cdrhub.reports import CallFilter, stats
from cdrhub.settings import Settings
from cdrhub.store import open_store
from cdrhub.store.schema import alert_history, alert_rules

TZ = "Asia/Shanghai"
#: 20 rules: every kind, the call kinds over several windows, directions and a task.
RULES: list[tuple[str, str, dict[str, object]]] = [
    ("sl-15", "service_level < 80%", {"window": "15m"}),
    ("sl-30", "service_level < 80%", {"window": "30m", "min_calls": 20}),
    ("sl-60-in", "service_level < 80%", {"window": "1h", "direction": "inbound"}),
    ("sl-4h-out", "service_level < 70%", {"window": "4h", "direction": "outbound"}),
    ("sl-task", "service_level < 80%", {"window": "1h", "task_id": "task-1"}),
    ("ab-15", "abandon_rate > 10%", {"window": "15m"}),
    ("ab-30", "abandon_rate > 10%", {"window": "30m", "min_calls": 20}),
    ("ab-60-in", "abandon_rate > 5%", {"window": "1h", "direction": "inbound"}),
    ("ab-8h", "abandon_rate > 20%", {"window": "8h"}),
    ("asa-15", "asa > 30s", {"window": "15m"}),
    ("asa-30", "asa > 30s", {"window": "30m"}),
    ("asa-2h-in", "asa > 20s", {"window": "2h", "direction": "inbound"}),
    ("asa-24h", "asa > 1m", {"window": "24h"}),
    ("silence", "no_pushes", {"window": "15m"}),
    ("silence-long", "no_pushes", {"window": "1h"}),
    ("refused-5", "refused > 20", {"window": "5m"}),
    ("refused-60", "refused > 100", {"window": "1h"}),
    ("spool", "spool_age > 5m", {}),
    ("forwarding", "destination_failing", {}),
    ("unpushed", "unpushed_calls > 0", {}),
]


def _pythonpath() -> dict[str, str]:
    """This checkout's source first, as the benchmark itself runs (not an installed cdrhub)."""
    import os

    found = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": found} if found else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    settings = Settings(database_url=args.url, timezone=TZ, alert_repeat_minutes=0)
    memory.keep_freed_memory(settings.keep_freed_memory_mb)
    store = open_store(args.url, fact_cache_bytes=settings.stats_cache_mb * 2**20)
    store.upgrade()
    if store.count_calls() == 0:
        t = time.perf_counter()
        end = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
        subprocess.run(
            [sys.executable, "-m", "cdrhub", "simulate", "--count", str(args.count),
             "--end", end, "--days", "60", "--database-url", args.url],
            check=True, env={"CDRHUB_TIMEZONE": TZ, "PATH": "", **_pythonpath()},
        )  # fmt: skip
        print(f"simulated {args.count:,} calls in {time.perf_counter() - t:.0f} s")
    with store.writing() as conn:
        conn.execute(delete(alert_history))
        conn.execute(delete(alert_rules))
    for name, condition, options in RULES:
        rules.add(store, name, condition, targets=["json://127.0.0.1:9/bench"], **options)  # type: ignore[arg-type]
    spool = {"pending": 0, "oldest_age_seconds": None}
    reconcile = {"enabled": True, "last_ok": True, "last_missing": 0}
    evaluator = Evaluator(
        store,
        settings,
        Sources(spool_status=lambda: spool, reconcile_status=lambda: reconcile),
        retry_delays=(),
    )
    now = time.time()
    t = time.perf_counter()
    first = evaluator.evaluate_once(now)
    first_ms = (time.perf_counter() - t) * 1000
    runs = []
    for _ in range(args.runs):
        t = time.perf_counter()
        done = evaluator.evaluate_once(now)  # the same moment: the same figures, no flips
        runs.append((time.perf_counter() - t) * 1000)
        assert not done, done  # steady state: nothing changed, nothing sent
    end = datetime.fromtimestamp(now, UTC)
    day = CallFilter(start=end - timedelta(hours=24), end=end)

    def overview() -> None:
        stats.compute(store, day, tz=ZoneInfo(TZ), sl_seconds=20, short_abandon_seconds=5)

    base = []
    for _ in range(args.runs):
        t = time.perf_counter()
        overview()
        base.append((time.perf_counter() - t) * 1000)
    med = statistics.median
    n = store.count_calls()
    print(
        f"| {store.kind} | {n:,} | all {len(RULES)} rules, steady state | median "
        f"{med(runs):.1f} ms (max {max(runs):.1f}, first {first_ms:.0f} ms with "
        f"{len(first)} firing) | < 50 ms |"
    )
    print(
        f"| {store.kind} | {n:,} | baseline: one stats figure of the last 24 h | median "
        f"{med(base):.1f} ms (rules cost {med(runs) / med(base):.1f}x it) | |"
    )
    store.close()


if __name__ == "__main__":
    main()
