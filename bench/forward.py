"""How much does forwarding cost ingest, how fast does it deliver, and how soon does a push
arrive? Three measurements, each against its baseline in the same run:

- ``ingest``: pushes/s of ``cdrhub serve`` (SQLite, one process) with two active destinations
  (a local webhook receiver and NATS JetStream) against the same server with none, loaded by
  wrk and bench/push.lua exactly as bench/run.py does, interleaved over several rounds;
- ``delivery``: N events preloaded in the outbox (``cdrhub simulate``), a destination added
  ``--from beginning``, one ``cdrhub forward run`` process; events/s from the first delivery
  to the last, to the webhook receiver and to NATS JetStream;
- ``latency``: wrk paced at a fixed rate into ``cdrhub serve`` with a webhook destination;
  per event, the receiver's arrival time minus the time the push was received (the event's
  ``created_at_ms``): p50, p99.

    python bench/forward.py                                 # all three, 3 rounds
    python bench/forward.py --parts delivery --events 20000 --rounds 3
    python bench/forward.py --rounds 3 --write              # what BENCHMARKS.md shows

Needs wrk, and NATS with JetStream on 127.0.0.1:4222 (``--nats``). The webhook receiver is
bench/receiver.py in its own process (raw asyncio, uvloop, httptools), so that it is not
what is measured. Every load is on loopback and bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import BIN, Target, machine, measure, wrk  # noqa: E402


class Receiver:
    """bench/receiver.py in its own process; its records are read from a file."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "receiver.py"), "--out", str(out)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY "):
            sys.exit(f"the receiver did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/hook"

    def records(self) -> list[dict[str, Any]]:
        with self.out.open(encoding="utf-8") as lines:
            return [json.loads(line) for line in lines if line.strip()]

    def count(self) -> int:
        with self.out.open("rb") as lines:
            return sum(1 for _ in lines)

    def clear(self) -> None:
        self.out.write_bytes(b"")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Nats:
    """A JetStream stream of the benchmark's own, on a unique subject; deleted at the end."""

    def __init__(self, server: str) -> None:
        self.server = server
        tag = uuid.uuid4().hex[:8]
        self.stream = f"CDRHUB_BENCH_{tag}"
        self.subject = f"cdrhub.bench.{tag}"
        self._call(self._create)

    def url(self) -> str:
        return f"{self.server}/{self.subject}"

    def _call(self, action: Any) -> Any:
        async def run() -> Any:
            import nats

            client = await nats.connect(self.server)
            try:
                return await action(client.jetstream())
            finally:
                await client.close()

        return asyncio.run(run())

    async def _create(self, js: Any) -> None:
        await js.add_stream(name=self.stream, subjects=[self.subject], max_msgs=2_000_000)

    def messages(self) -> int:
        async def info(js: Any) -> int:
            return int((await js.stream_info(self.stream)).state.messages)

        return int(self._call(info))

    def delete(self) -> None:
        async def delete(js: Any) -> None:
            await js.delete_stream(self.stream)

        with contextlib.suppress(Exception):
            self._call(delete)


def cdrhub(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "cdrhub"), *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


def sqlite_scalar(url: str, sql: str) -> Any:
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return conn.execute(sql).fetchone()[0]


# -- ingest with and without destinations ----------------------------------------------------


class ForwardingTarget(Target):
    """``cdrhub serve`` on SQLite, with the given destinations added before it starts."""

    def __init__(self, label: str, workdir: Path, urls: list[str], src: str = "") -> None:
        super().__init__("cdrhub-sqlite", workdir)
        self.label, self.urls = label, urls
        if src:  # run another checkout's code (the baseline)
            self.env["PYTHONPATH"] = os.pathsep.join(
                p for p in (src, self.env.get("PYTHONPATH", "")) if p
            )

    separate = False  # deliver from a `cdrhub forward run` beside serve (CDRHUB_FORWARD=false)

    def _prepare(self) -> list[str]:
        command = super()._prepare()
        for number, url in enumerate(self.urls):
            cdrhub(self.env, "forward", "add", f"dest{number}", url)
        if self.separate:
            self.env["CDRHUB_FORWARD"] = "false"
        return command

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with super().running():
            if not self.separate:
                yield
                return
            with forward_run(self.env, self.workdir / "forward-run.log"):
                yield


def ingest(args: argparse.Namespace, receiver: Receiver, nats: Nats) -> str:
    both = [receiver.url, nats.url()]
    variants: dict[str, tuple[list[str], str]] = {
        "no destinations": ([], ""),
        "webhook + NATS": (both, ""),
    }
    if args.baseline_src:
        src = str(Path(args.baseline_src).resolve() / "src")
        variants[f"webhook + NATS ({args.baseline_label})"] = (both, src)
    apart = "webhook + NATS, delivered by `forward run` beside serve"
    if args.separate:
        variants[apart] = (both, "")
    results: dict[str, list[Any]] = {name: [] for name in variants}
    behind: dict[str, list[int]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="cdrhub-fwbench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for name, (urls, src) in variants.items():
                target = ForwardingTarget(name, Path(tmp), urls, src)
                target.separate = name == apart
                r = measure(target, args.duration, args.connections, args.threads)
                results[name].append(r)
                url = target.env["CDRHUB_DATABASE_URL"]
                events = int(sqlite_scalar(url, "SELECT count(*) FROM events"))
                lag = 0
                if urls:  # events not yet delivered when the server was stopped
                    lag = events - int(
                        sqlite_scalar(url, "SELECT min(cursor_seq) FROM destinations")
                    )
                behind[name].append(lag)
                print(
                    f"ingest round {round_} {name:>28}: {r.rps:8.0f}/s p50 {r.p50:6.2f} ms "
                    f"p99 {r.p99:6.2f} ms errors {r.errors} stored {r.stored} for {r.oks} "
                    f"200s; {events} events, {lag} not delivered at the stop",
                    flush=True,
                )
    base = statistics.median(r.rps for r in results["no destinations"])
    lines = [
        "| destinations | pushes/s (median) | p50 ms | p99 ms | errors | rows == 200s "
        "| x none | undelivered at the stop |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for name, rs in results.items():
        rps = statistics.median(r.rps for r in rs)
        ok = all(0 <= r.stored - r.oks <= args.connections for r in rs)
        lines.append(
            f"| {name} | {rps:,.0f} | {statistics.median(r.p50 for r in rs):.2f} | "
            f"{statistics.median(r.p99 for r in rs):.2f} | {sum(r.errors for r in rs)} | "
            f"{'yes' if ok else 'NO'} | {rps / base:.2f} | "
            f"{', '.join(f'{n:,}' for n in behind[name]) if any(behind[name]) else '0'} |"
        )
    return "\n".join(lines)


# -- delivery rate from a preloaded outbox ---------------------------------------------------


@contextlib.contextmanager
def forward_run(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(BIN / "cdrhub"), "forward", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def delivery(args: argparse.Namespace, receiver: Receiver) -> str:
    n = args.events
    codes = {"": ""}  # label -> PYTHONPATH prefix for `cdrhub forward run`
    if args.baseline_src:
        codes[f" ({args.baseline_label})"] = str(Path(args.baseline_src).resolve() / "src")
    kinds = [f"{kind}{code}" for code in codes for kind in ("webhook", "nats")]
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="cdrhub-fwbench-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir}/outbox.db"
        env = {
            **Target("cdrhub-sqlite", workdir).env,
            "CDRHUB_DATABASE_URL": url,
            "CDRHUB_DATA_DIR": str(workdir / "data"),
        }
        cdrhub(env, "db", "upgrade")
        started = time.monotonic()
        subprocess.run(
            [str(BIN / "cdrhub"), "simulate", "--count", str(n), "--days", "2", "--seed", "1"],
            env=env,
            check=True,
            capture_output=True,
        )
        events = int(sqlite_scalar(url, "SELECT count(*) FROM events"))
        print(f"outbox: {events} events ({time.monotonic() - started:.1f} s)", flush=True)
        for round_ in range(1, args.rounds + 1):
            for label in kinds:
                kind, _, code = label.partition(" ")
                run_env = dict(env)
                if code:
                    prefix = codes[" " + code]
                    run_env["PYTHONPATH"] = os.pathsep.join(
                        p for p in (prefix, env.get("PYTHONPATH", "")) if p
                    )
                name = f"{kind}{round_}"
                if kind == "webhook":
                    receiver.clear()
                    cdrhub(env, "forward", "add", name, receiver.url, "--from", "beginning")
                else:
                    # A stream of its own each time: JetStream drops a message id it saw in
                    # the last two minutes (even after a purge), and these are the same ids.
                    stream = Nats(args.nats)
                    cdrhub(env, "forward", "add", name, stream.url(), "--from", "beginning")
                begun = time.monotonic()
                first = last = None
                with forward_run(run_env, workdir / "forward.log"):
                    deadline = begun + args.timeout
                    while time.monotonic() < deadline:
                        got = receiver.count() if kind == "webhook" else stream.messages()
                        now = time.monotonic()
                        if got and first is None:
                            first = now
                        if got >= events:
                            last = now
                            break
                        time.sleep(0.05)
                cdrhub(env, "forward", "remove", name)
                if kind == "nats":
                    stream.delete()
                if first is None or last is None:
                    print(f"delivery round {round_} {label}: not done in {args.timeout} s")
                    continue
                if kind == "webhook":  # the receiver's own clock: first to last arrival
                    times = [r["t"] for r in receiver.records()]
                    span = max(times) - min(times)
                else:
                    span = last - first
                rate = events / span
                rates[label].append(rate)
                walls[label].append(last - begun)
                print(
                    f"delivery round {round_} {label:>20}: {rate:8.0f} events/s "
                    f"({events} in {span:.2f} s; {last - begun:.1f} s from process start)",
                    flush=True,
                )
    goals = {"webhook": 2000, "nats": 5000}
    lines = [
        "| destination | events | events/s (median) | rounds | s from process start (median) "
        "| goal | met |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    names = {"webhook": "webhook (bench/receiver.py)", "nats": "NATS JetStream"}
    for label, rs in rates.items():
        if not rs:
            continue
        kind, _, code = label.partition(" ")
        median = statistics.median(rs)
        lines.append(
            f"| {names[kind]}{' ' + code if code else ''} | "
            f"{events:,} | {median:,.0f} | {', '.join(f'{r:,.0f}' for r in rs)} | "
            f"{statistics.median(walls[label]):.1f} | {goals[kind]:,} | "
            f"{('yes' if median >= goals[kind] else 'no') if not code else 'baseline'} |"
        )
    return "\n".join(lines)


# -- push-to-destination latency -------------------------------------------------------------


def latency(args: argparse.Namespace, receiver: Receiver) -> str:
    rows = [
        "| offered pushes/s | achieved/s | events | push p50 ms | push p99 ms "
        "| push-to-destination p50 ms | p99 ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="cdrhub-fwbench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            receiver.clear()
            target = ForwardingTarget("webhook", Path(tmp), [receiver.url])
            with target.running():
                wrk(target.port, 2, args.latency_connections, args.threads, args.rate)
                time.sleep(1.0)
                skip = int(
                    sqlite_scalar(target.env["CDRHUB_DATABASE_URL"], "SELECT max(seq) FROM events")
                )
                r = wrk(
                    target.port, args.duration, args.latency_connections, args.threads, args.rate
                )
                time.sleep(2.0)  # the last events arrive
            url = target.env["CDRHUB_DATABASE_URL"]
            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
                created = dict(
                    conn.execute("SELECT id, created_at_ms FROM events WHERE seq > ?", (skip,))
                )
            arrived: dict[str, float] = {}
            for record in receiver.records():
                arrived.setdefault(record["id"], record["t"])
            delays = sorted(arrived[i] * 1000 - ms for i, ms in created.items() if i in arrived)
            missing = len(created) - len(delays)
            p50 = delays[len(delays) // 2]
            p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            achieved = r["requests"] / (r["duration_us"] / 1e6)
            rows.append(
                f"| {args.rate:,} | {achieved:,.0f} | {len(created):,} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {p50:.1f} | {p99:.1f} | {delays[-1]:.1f} |"
            )
            print(f"latency round {round_}: {rows[-1]} (not arrived: {missing})", flush=True)
    return "\n".join(rows)


# -- BENCHMARKS.md ---------------------------------------------------------------------------


def write_section(title: str, command: str, body: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {title}\n\n<!-- generated by bench/forward.py -->\n"
        f"Measured {stamp} with `{command}` on {machine()}.\n\n{body}\n"
    )
    pattern = re.compile(
        rf"## {re.escape(title)}\n\n<!-- generated by bench/forward.py -->\n.*?(?=\n## |\Z)", re.S
    )
    text = (
        pattern.sub(section.rstrip("\n"), text)
        if pattern.search(text)
        else text.rstrip("\n") + "\n\n" + section
    )
    path.write_text(text if text.endswith("\n") else text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="ingest,delivery,latency")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c for ingest (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    parser.add_argument("--events", type=int, default=20000, help="outbox size (20,000)")
    parser.add_argument("--timeout", type=float, default=120, help="delivery limit, s (120)")
    parser.add_argument("--rate", type=int, default=500, help="latency: pushes/s (500)")
    parser.add_argument("--latency-connections", type=int, default=100, help="wrk -c (100)")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument(
        "--baseline-src",
        help="delivery: also run `forward run` from this checkout's src/ (older code), "
        "interleaved, e.g. made by `git worktree add /tmp/base REV`",
    )
    parser.add_argument("--baseline-label", default="baseline", help="its name in the table")
    parser.add_argument(
        "--separate",
        action="store_true",
        help="ingest: also with delivery in its own `cdrhub forward run` process",
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
    parts = [p for p in args.parts.split(",") if p]
    command = "python " + shlex.join(["bench/forward.py", *sys.argv[1:]])
    tables: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cdrhub-fwrecv-") as tmp:
        receiver = Receiver(Path(tmp) / "received.jsonl")
        nats = Nats(args.nats)
        try:
            if "ingest" in parts:
                tables["ingest"] = ingest(args, receiver, nats)
            if "delivery" in parts:
                tables["delivery"] = delivery(args, receiver)
            if "latency" in parts:
                tables["latency"] = latency(args, receiver)
        finally:
            receiver.stop()
            nats.delete()
    titles = {
        "ingest": "Forwarding: ingest with two destinations against none",
        "delivery": "Forwarding: delivery rate from one process",
        "latency": f"Forwarding: push-to-destination latency at {args.rate} pushes/s",
    }
    for part, table in tables.items():
        print(f"\n{titles[part]}\n{table}")
        if args.write:
            write_section(titles[part], command, table)


if __name__ == "__main__":
    main()
