"""Does every push that got a 200 survive kill -9? Crash cdrhub over and over and count.

Runs ``cdrhub serve`` as a subprocess, pushes unique calls from several concurrent clients
(retrying, as NXCC does, until a push gets its 200), and ``kill -9``s the server at random
moments, restarting it each time. Optionally stops PostgreSQL (``-m immediate``) in the middle
so pushes go to the spool. At the end, every callId that was acknowledged must be in the
database exactly once.

    python bench/crash.py --kills 20                          # SQLite
    python bench/crash.py --database postgres --kills 20
    python bench/crash.py --database postgres --postgres-outage --kills 20

Prints acked, stored, lost and duplicated; exits 1 if anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
TOKEN = "crash-test-token-0123456789"
PG_ADMIN = os.environ.get(
    "CDRHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pg_ctl(action: str) -> None:
    """Stop (immediately, like a crash) or start the local PostgreSQL cluster."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    args = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        args += ["-m", "immediate"]
    subprocess.run(args, check=True, capture_output=True)


class Server:
    """The cdrhub process under test; ``crash()`` is kill -9, ``start()`` brings it back."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "cdrhub"), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            if self.process.poll() is not None:
                sys.exit(f"cdrhub exited: {self.log.read_text()[-1500:]}")
            time.sleep(0.05)
        sys.exit("cdrhub did not start")

    def crash(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


class Client(threading.Thread):
    """Pushes new calls one after the other; a push is retried until it gets its 200."""

    def __init__(self, port: int, stop: threading.Event, name: str) -> None:
        super().__init__(daemon=True)
        self.port, self.stop_event, self.prefix = port, stop, name
        self.acked: list[str] = []
        self.errors = 0

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            n += 1
            call_id = f"{self.prefix}-{n}"
            body = json.dumps(
                {
                    "callId": call_id,
                    "direction": 2,
                    "intent": "转人工-成功",
                    "startTime": int(time.time() * 1000),
                    "callDuration": n % 90,
                }
            )
            while not self.stop_event.is_set():
                if self._push(body):
                    self.acked.append(call_id)
                    break
                self.errors += 1
                time.sleep(0.05)

    def _push(self, body: str) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(
                "POST",
                "/cc/callback",
                body=body.encode(),
                headers={"token": TOKEN, "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()


def stored_ids(url: str) -> list[str]:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return [r[0] for r in conn.execute("SELECT call_id FROM calls")]
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT call_id FROM calls")]


def wait_drained(port: int, timeout: float = 60) -> None:
    """Wait until the spool is empty and the journal applied (/readyz says ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/readyz")
            ready = json.loads(connection.getresponse().read())
            checks = ready["checks"]
            spooled = checks.get("spool", {}).get("pending", 0)
            journaled = checks.get("journal", {}).get("pending_bytes", 0)
            if ready["status"] == "ready" and spooled == 0 and journaled == 0:
                return
        time.sleep(0.2)
    print("warning: the spool did not drain in time")


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="cdrhub-crash-") as tmp:
        workdir = Path(tmp)
        pg_database = None
        if args.database == "postgres":
            import psycopg

            pg_database = f"cdrhub_crash_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_database}"')
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_database}"
        else:
            url = f"sqlite:///{workdir}/crash.db"
        env = {
            **os.environ,
            "CDRHUB_DATABASE_URL": url,
            "CDRHUB_TOKENS": TOKEN,
            "CDRHUB_DATA_DIR": str(workdir / "data"),
            "CDRHUB_LOG_LEVEL": "warning",
            "CDRHUB_SQLITE_BUSY_TIMEOUT_MS": "1000",
        }
        if args.journal:
            env["CDRHUB_JOURNAL"] = "true"
        subprocess.run(
            [str(BIN / "cdrhub"), "db", "upgrade"], env=env, check=True, capture_output=True
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = Server(env, port, workdir / "server.log")
        stop = threading.Event()
        clients = [Client(port, stop, f"c{i}-{uuid.uuid4().hex[:6]}") for i in range(args.clients)]
        outage_at = args.kills // 2 if args.postgres_outage else -1
        postgres_stopped = False
        try:
            server.start()
            for client in clients:
                client.start()
            for kill in range(args.kills):
                if kill == outage_at:
                    pg_ctl("stop")
                    postgres_stopped = True
                    print("PostgreSQL stopped (immediate): pushes go to the spool", flush=True)
                time.sleep(rng.uniform(args.min_gap, args.max_gap))
                server.crash()
                server.start()
                if postgres_stopped and kill >= outage_at + 3:
                    pg_ctl("start")
                    postgres_stopped = False
                    print("PostgreSQL started again", flush=True)
            time.sleep(args.max_gap)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=15)
            if postgres_stopped:
                pg_ctl("start")
        wait_drained(port)
        server.stop()
        acked = [c for client in clients for c in client.acked]
        stored = stored_ids(url)
        present = set(stored)
        lost = [c for c in acked if c not in present]
        duplicated = len(stored) - len(present)
        print(
            json.dumps(
                {
                    "kills": args.kills,
                    "acked": len(acked),
                    "stored": len(stored),
                    "lost": len(lost),
                    "duplicated": duplicated,
                    "retried_attempts": sum(c.errors for c in clients),
                }
            )
        )
        if lost:
            print("lost callIds (first 10):", lost[:10])
        if pg_database:
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
        return 1 if lost or duplicated else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 this many times (20)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent senders (4)")
    parser.add_argument("--min-gap", type=float, default=0.2, help="seconds between kills, min")
    parser.add_argument("--max-gap", type=float, default=1.0, help="seconds between kills, max")
    parser.add_argument(
        "--postgres-outage",
        action="store_true",
        help="stop PostgreSQL half-way (and start it again 3 kills later)",
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed for the kill times")
    parser.add_argument(
        "--journal",
        action="store_true",
        help="serve with CDRHUB_JOURNAL=true (a 200 from the journal)",
    )
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
