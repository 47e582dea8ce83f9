"""How long does the wallboard take to refresh over a million calls?

Usage: python bench/wall.py DATABASE_URL [--runs 50] [--timezone Asia/Shanghai]
(on a database filled by `cdrhub simulate --count 1000000 --days 30`, ending today: the
wallboard shows today). Times what a TV does every refresh, ``GET /wall/data`` with a
wallboard link, through the real app in-process, set up as `cdrhub serve` is (the snapshot
cache, the allocator setting): link check, figures, JSON, no network. The first request (cold
cache) is reported apart. Baseline, in the same run: the same figures from a plain scan of
today's rows in the calls table (the same vectorised aggregation, no hourly snapshots).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select

from cdrhub.app import create_app
from cdrhub.auth import wallboard as links
from cdrhub.ops import memory
from cdrhub.reports import columns, query, stats
from cdrhub.settings import Settings
from cdrhub.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--timezone", default="Asia/Shanghai")
    args = parser.parse_args()
    tz = ZoneInfo(args.timezone)
    settings = Settings(
        database_url=args.url,
        tokens=["benchmark-token-0123456789"],
        timezone=args.timezone,
        data_dir=tempfile.mkdtemp(),
    )
    memory.keep_freed_memory(settings.keep_freed_memory_mb)
    store = open_store(args.url)
    store.upgrade()
    calls = store.count_calls()
    _, token = links.create_link(store, "benchmark")
    with TestClient(create_app(settings)) as client:
        samples = []
        for _ in range(args.runs + 1):
            started = time.perf_counter()
            response = client.get("/wall/data", params={"link": token})
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
        today = response.json()["today"]
    first, samples = samples[0], samples[1:]  # the first reads today's snapshots from the db

    now = datetime.now(tz)
    start = datetime.combine(now.date(), datetime.min.time(), tz) - timedelta(hours=1)
    where = query.CallFilter(start=start, end=start + timedelta(days=1, hours=1))
    scans = []
    for _ in range(max(args.runs // 5, 3)):
        started = time.perf_counter()
        with store.read_engine.connect() as conn:
            rows = conn.execute(select(*columns.SOURCE).where(*where.conditions())).all()
        stats.aggregate(columns.from_rows(rows), (), tz=tz, sl_seconds=20, short_abandon_seconds=5,
                        with_percentiles=False)  # fmt: skip
        scans.append((time.perf_counter() - started) * 1000)
    links.revoke_link(store, "benchmark")
    store.close()
    median, scan = statistics.median(samples), statistics.median(scans)
    p95 = statistics.quantiles(samples, n=20)[-1]
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, today's calls so far: {today['calls']:,}")
    print(
        f"| {store.kind} | {calls:,} | wallboard refresh (GET /wall/data) | median "
        f"{median:.1f} ms, p95 {p95:.1f} ms (first {first:.0f} ms) | < 50 ms |"
    )
    print(
        f"| {store.kind} | {calls:,} | baseline: the same day from a table scan | median "
        f"{scan:.0f} ms ({scan / median:.0f}x slower) | |"
    )


if __name__ == "__main__":
    main()
