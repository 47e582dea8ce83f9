"""How fast does cdrhub take pushes, next to the bare-ASGI ceiling and a naive receiver?

Runs each target as its own server process on loopback, interleaved over several rounds (so
machine noise hits them alike), loads it with wrk and bench/push.lua (every callId unique),
and reports medians and ratios. For cdrhub it also checks that the rows stored match the 200s
answered. ``--curve`` measures latency at fixed request rates instead; ``--write`` puts the
table in BENCHMARKS.md.

    python bench/run.py                       # 3 rounds x 10 s, 64 connections
    python bench/run.py --rounds 5 --write    # what BENCHMARKS.md shows
    python bench/run.py --curve --write       # p50/p99 at 500, 2000, 5000/s and max
    python bench/run.py --curve --rates 500 --no-max --duration 60 --title "Steady load" --write
    python bench/run.py --targets cdrhub-sqlite@4963c62,cdrhub-sqlite   # before/after a change

A target named ``NAME@REF`` runs the cdrhub of git revision REF (its ``src`` exported into
the run's temporary directory), so a change is measured against the code before it in the
same run. Besides pushes/s, each cdrhub run reports the server's CPU time per push (user +
system, all its processes): on a machine whose load varies between runs, the steadier figure.

Needs wrk (Debian: apt-get install wrk). PostgreSQL targets need CDRHUB_BENCH_POSTGRES_URL
(default postgresql://postgres@127.0.0.1:5432/postgres) and are skipped when it is unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "bench-token-0123456789"
# As users run it: info (a summary line a minute; CDRHUB_LOG_PUSHES=true adds a line a push).
LOG_LEVEL = os.environ.get("CDRHUB_BENCH_LOG_LEVEL", "info")
PG_URL = os.environ.get(
    "CDRHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Result:
    target: str
    rps: float
    p50: float
    p99: float
    errors: int
    oks: int
    stored: int | None  # rows added during the measured run (cdrhub targets)
    cpu_us: float | None = None  # server CPU (user + system, every process) per request
    #: Journal targets: seconds from the end of the load until the applier had applied every
    #: push answered (how far behind it was; it runs below the server's priority).
    behind_s: float | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited early:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    process.kill()
    sys.exit(f"server did not start:\n{log.read_text()[-2000:]}")


class Target:
    """One server under test: how to start it and how to count what it stored."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.kind, _, self.ref = name.partition("@")
        self.workdir = workdir
        self.port = free_port()
        self.env = {
            **os.environ,
            "BENCH_TOKEN": TOKEN,
            "CDRHUB_TOKENS": TOKEN,
            "CDRHUB_LOG_LEVEL": LOG_LEVEL,
        }
        self.pg_database: str | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        command = self._prepare()
        log = self.workdir / f"{self.name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = process.pid
        try:
            wait_for(self.port, process, log)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            self._cleanup()

    def _prepare(self) -> list[str]:
        uvicorn = [
            str(BIN / "python"),
            "-m",
            "uvicorn",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if self.kind == "ceiling":
            return [*uvicorn, "bench.ceiling:app"]
        if self.kind == "naive":
            self.env["NAIVE_DB"] = str(self.workdir / f"naive-{uuid.uuid4().hex}.db")
            return [*uvicorn, "bench.naive:app"]
        if self.kind.startswith("cdrhub-sqlite"):
            self.env["CDRHUB_DATABASE_URL"] = f"sqlite:///{self.workdir}/{uuid.uuid4().hex}.db"
        elif self.kind.startswith("cdrhub-postgres"):
            self.pg_database = f"cdrhub_bench_{uuid.uuid4().hex[:10]}"
            _pg_admin(f'CREATE DATABASE "{self.pg_database}"')
            self.env["CDRHUB_DATABASE_URL"] = _pg_url(self.pg_database)
        workers = re.search(r"-(\d+)w$", self.kind)
        if workers:
            self.env["CDRHUB_WORKERS"] = workers.group(1)
        if "-journal" in self.kind:
            self.env["CDRHUB_JOURNAL"] = "true"
        if "-thread" in self.kind:
            self.env["CDRHUB_JOURNAL_APPLIER"] = "thread"
        if "-lines" in self.kind:
            self.env["CDRHUB_LOG_PUSHES"] = "true"  # an INFO line a push
        self.env["CDRHUB_DATA_DIR"] = str(self.workdir / f"data-{uuid.uuid4().hex[:8]}")
        if self.ref:
            self.env["PYTHONPATH"] = str(_source_of(self.ref, self.workdir))
        cdrhub = [str(BIN / "python"), "-m", "cdrhub"]
        subprocess.run([*cdrhub, "db", "upgrade"], env=self.env, check=True, capture_output=True)
        return [*cdrhub, "serve", "--port", str(self.port)]

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and its worker processes so far."""
        total = 0
        for pid in family(self.pid):
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def rows(self) -> int | None:
        url = self.env.get("CDRHUB_DATABASE_URL")
        if url is None:
            return None
        if url.startswith("sqlite"):
            with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
                return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])
        import psycopg

        with psycopg.connect(url) as conn:
            return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])

    def _cleanup(self) -> None:
        if self.pg_database:
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_database}" WITH (FORCE)')
            self.pg_database = None


def family(pid: int) -> list[int]:
    """``pid`` and its child processes (workers, the journal's applier), from /proc."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
    return pids


def _source_of(ref: str, workdir: Path) -> Path:
    """The ``src`` of git revision ``ref``, exported once per run into ``workdir``."""
    target = workdir / f"src-{ref}"
    if not target.exists():
        target.mkdir()
        archive = subprocess.run(
            ["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src"


def _pg_url(database: str) -> str:
    return re.sub(r"/[^/]*$", f"/{database}", PG_URL)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql)


def postgres_reachable() -> bool:
    try:
        _pg_admin("SELECT 1")
    except Exception as exc:  # report and go on without the PostgreSQL targets
        print(f"PostgreSQL not reachable at {PG_URL} ({exc}); skipping its targets")
        return False
    return True


def wrk(
    port: int, seconds: float, connections: int, threads: int, rate: int | None = None
) -> dict[str, float]:
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{round(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(ROOT / "bench" / "push.lua"),
        f"http://127.0.0.1:{port}",
        "--",
        TOKEN,
        "/cc/callback",
    ]
    if rate:
        args += [str(rate), str(connections)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(li for li in out.splitlines() if li.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def measure(target: Target, seconds: float, connections: int, threads: int) -> Result:
    with target.running():
        wrk(target.port, 2, connections, threads)  # warm-up (imports, caches, pages)
        time.sleep(0.5)
        # The warm-up's pushes are not the run's: with several workers /readyz speaks for one
        # worker's applier, and the others (at a lower priority) may still be applying them.
        before = settled_rows(target)
        cpu_before = target.cpu_seconds()
        r = wrk(target.port, seconds, connections, threads)
        cpu = target.cpu_seconds() - cpu_before  # the applier's catching up is not counted
        behind = applied_after(target.port) if "-journal" in target.name else None
        time.sleep(1.0)  # let in-flight pushes land before counting
        after = settled_rows(target)
    errors = int(r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"])
    oks = int(r["requests"] - r["non2xx"])
    stored = None if before is None or after is None else after - before
    return Result(
        target.name,
        r["requests"] / (r["duration_us"] / 1e6),
        r["p50_ms"],
        r["p99_ms"],
        errors,
        oks,
        stored,
        cpu * 1e6 / max(1, r["requests"]),
        behind,
    )


def settled_rows(target: Target) -> int | None:
    """The rows stored, once a journal target's appliers have applied what was answered.

    /readyz answers for one worker's journal: with several, wait until no applier adds rows
    any more.
    """
    if "-journal" not in target.name:
        return target.rows()
    applied_after(target.port)
    rows = target.rows()
    while True:
        time.sleep(1.0)
        settled = target.rows()
        if settled == rows:
            return rows
        rows = settled


def applied_after(port: int, timeout: float = 120) -> float:
    """Wait until the journal is applied (/readyz); returns the seconds that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(OSError, ValueError, KeyError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                if json.loads(answer.read())["checks"]["journal"]["pending_bytes"] == 0:
                    return time.monotonic() - started
        time.sleep(0.1)
    print("warning: the journal was not applied in time")
    return time.monotonic() - started


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    sqlite_version = sqlite3.sqlite_version
    import uvicorn

    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, uvicorn {uvicorn.__version__}, "
        f"SQLite {sqlite_version}"
    )


def throughput(args: argparse.Namespace) -> str:
    names = [n for n in args.targets.split(",") if n]
    if any(n.startswith("cdrhub-postgres") for n in names) and not postgres_reachable():
        names = [n for n in names if not n.startswith("cdrhub-postgres")]
    results: dict[str, list[Result]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="cdrhub-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for name in names:
                seconds = min(args.duration, 5) if name == "naive" else args.duration
                r = measure(Target(name, Path(tmp)), seconds, args.connections, args.threads)
                results[name].append(r)
                check = "" if r.stored is None else f", stored {r.stored} for {r.oks} 200s"
                if r.behind_s is not None:
                    check += f", applied {r.behind_s:.1f} s after the load"
                print(
                    f"round {round_} {name:>20}: {r.rps:9.0f}/s  p50 {r.p50:7.2f} ms  "
                    f"p99 {r.p99:7.2f} ms  cpu {r.cpu_us:6.1f} us/push  errors {r.errors}{check}",
                    flush=True,
                )
    return _table(results, args)


def _table(results: dict[str, list[Result]], args: argparse.Namespace) -> str:
    med = {n: statistics.median(r.rps for r in rs) for n, rs in results.items() if rs}
    ceiling, naive = med.get("ceiling"), med.get("naive")
    lines = [
        "| target | pushes/s (median) | p50 ms | p99 ms | server CPU us/push | errors | "
        "rows == 200s | x ceiling | x naive |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, rs in results.items():
        if not rs:
            continue
        stored_ok = "n/a"
        if rs[0].stored is not None:
            # wrk does not count the replies still in flight when it stops: at most one
            # per connection may be stored without being counted as a 200.
            stored_ok = (
                "yes"
                if all(
                    0 <= r.stored - r.oks <= args.connections
                    for r in rs  # type: ignore[operator]
                )
                else "NO"
            )
        x_ceiling = f"{med[name] / ceiling:.2f}" if ceiling else "n/a"
        x_naive = f"{med[name] / naive:.1f}" if naive else "n/a"
        lines.append(
            f"| {name} | {med[name]:,.0f} | {statistics.median(r.p50 for r in rs):.2f} | "
            f"{statistics.median(r.p99 for r in rs):.2f} | "
            f"{statistics.median(r.cpu_us for r in rs if r.cpu_us is not None):.0f} | "
            f"{sum(r.errors for r in rs)} | "
            f"{stored_ok} | {x_ceiling} | {x_naive} |"
        )
    return "\n".join(lines)


def curve(args: argparse.Namespace) -> str:
    rates = [int(r) for r in args.rates.split(",")]
    paced: list[int] = rates if args.no_max else [*rates, 0]
    rows = [
        "| offered pushes/s | achieved/s | p50 ms | p99 ms | errors |",
        "|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="cdrhub-bench-") as tmp:
        for rate in paced:
            target = Target("cdrhub-sqlite", Path(tmp))
            with target.running():
                wrk(target.port, 2, args.connections, args.threads, rate or None)
                r = wrk(target.port, args.duration, args.connections, args.threads, rate or None)
            errors = int(r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"])
            achieved = r["requests"] / (r["duration_us"] / 1e6)
            label = f"{rate:,}" if rate else "max (unpaced)"
            rows.append(
                f"| {label} | {achieved:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {errors} |"
            )
            print(rows[-1], flush=True)
    return "\n".join(rows)


def write_section(title: str, command: str, table: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (
        f"## {title}\n\n<!-- generated by bench/run.py -->\n"
        f"Measured {stamp} with `{command}` on {machine()}.\n\n{table}\n"
    )
    pattern = re.compile(
        rf"## {re.escape(title)}\n\n<!-- generated by bench/run.py -->\n"
        r".*?(?=\n## |\Z)",
        re.S,
    )
    text = (
        pattern.sub(section.rstrip("\n"), text)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + section)
    )
    path.write_text(text if text.endswith("\n") else text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    parser.add_argument(
        "--targets",
        default="ceiling,cdrhub-sqlite,cdrhub-postgres,naive",
        help="comma-separated: ceiling, naive, cdrhub-sqlite, cdrhub-postgres; a cdrhub target "
        "takes -journal (CDRHUB_JOURNAL=true), -thread (its applier in the server process), "
        "-lines (CDRHUB_LOG_PUSHES=true) and "
        "-Nw (N workers), e.g. cdrhub-sqlite-journal-2w, "
        "and @REF for the code of git revision REF, e.g. cdrhub-sqlite@HEAD~3",
    )
    parser.add_argument("--curve", action="store_true", help="latency at fixed rates instead")
    parser.add_argument("--rates", default="500,2000,5000", help="rates for --curve")
    parser.add_argument("--no-max", action="store_true", help="--curve without the unpaced run")
    parser.add_argument("--title", help="section title in BENCHMARKS.md (with --write)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
    command = "python " + shlex.join(["bench/run.py", *sys.argv[1:]])
    if args.curve:
        table = curve(args)
        title = "Latency at fixed rates (cdrhub, SQLite, 1 process)"
    else:
        table = throughput(args)
        title = "Push throughput"
    print(table)
    if args.write:
        write_section(args.title or title, command, table)


if __name__ == "__main__":
    main()
