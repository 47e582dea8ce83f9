"""How long does the dashboard's overview take to render over many calls?

Usage: python bench/dashboard.py DATABASE_URL [--range 30d | --from D --to D] [--runs 20]
(on a database filled by `cdrhub simulate --count 1000000 --days 60`). Times GET /?range=...
through the real app in-process, set up as `cdrhub serve` is: the server's time to compute
every figure and render the page, no network. Prints medians and p95 in ms; the first
request (a cold cache) is reported apart.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time

from fastapi.testclient import TestClient

from cdrhub.app import create_app
from cdrhub.auth import users
from cdrhub.settings import Settings
from cdrhub.store import open_store

PASSWORD = "benchmark-password"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--range", default="30d")
    parser.add_argument("--from", dest="start", help="custom range: first day (ISO date)")
    parser.add_argument("--to", dest="end", help="custom range: last day (ISO date)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timezone", default="Asia/Shanghai")
    args = parser.parse_args()
    store = open_store(args.url)
    store.upgrade()
    if not any(u.name == "bench" for u in users.all_users(store)):
        users.create(store, "bench", "viewer", PASSWORD)
    calls = store.count_calls()
    store.close()
    settings = Settings(
        database_url=args.url,
        tokens=["benchmark-token-0123456789"],
        timezone=args.timezone,
        data_dir=tempfile.mkdtemp(),
    )
    with TestClient(create_app(settings)) as client:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf is not None
        client.post("/login", data={"name": "bench", "password": PASSWORD, "csrf": csrf[1]})
        page = f"/?range={args.range}"
        if args.start and args.end:
            page = f"/?range=custom&from={args.start}&to={args.end}"
        samples = []
        for _ in range(args.runs + 1):
            started = time.perf_counter()
            response = client.get(page)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200 and 'id="kpis"' in response.text
    first, samples = samples[0], samples[1:]  # the first reads every snapshot from the database
    p95 = statistics.quantiles(samples, n=20)[-1]
    shown = f"{args.start} to {args.end}" if args.start and args.end else f"range {args.range}"
    print(
        f"| {store.kind} | {calls:,} | overview, {shown} | median "
        f"{statistics.median(samples):.0f} ms, p95 {p95:.0f} ms (first {first:.0f} ms) "
        "| < 300 ms |"
    )


if __name__ == "__main__":
    main()
