"""Does forwarding keep its promise through kill -9? Crash cdrhub while it forwards, and check.

Runs ``cdrhub serve`` as a subprocess with one webhook destination (``--from beginning``)
pointing at ``bench/receiver.py``, a separate process that records every request and
answers 500, or hangs past the destination's timeout, on a share of them. Several clients
push new calls, corrections and exact duplicates (each push retried until its 200, as NXCC
does) while the server is killed with SIGKILL over and over (its whole process group, so
``--workers`` children die too) and started again. Then the clients stop, the last server
delivers what is left, and the run compares what the receiver got with the ``events`` table:

- ``missing``: events that never got a 2xx from the receiver (must be 0);
- ``unknown``: event ids the receiver got that are not in ``events`` (must be 0);
- ``changed``: one event id sent with different bodies, or a body whose ``id`` is not its
  ``webhook-id`` header (must be 0: repeats carry the same id and content);
- ``out_of_order``: calls whose versions' first 2xx arrivals are not in event ``seq`` order;
  ``sent_early``: attempts of a version made before the older version was delivered (0);
- ``not_forwarded``: pushes that got a 200 whose exact body never arrived as ``data.raw``;
  ``doubled``: a call version with two events (a duplicate push made an event) (both 0).

    python bench/forward_crash.py --kills 20                              # SQLite
    python bench/forward_crash.py --database postgres --kills 20
    python bench/forward_crash.py --database postgres --workers 2 --kills 10

Prints a JSON summary as its last line; exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import base64
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
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "forward-crash-token-0123456789"
PG_ADMIN = os.environ.get(
    "CDRHUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Short, so that retries happen within the run; ten steps, so that an event dies only if
# eleven attempts in a row fail (with 20% failing: about 2 in 10^8).
RETRY_SCHEDULE = "100ms,200ms,300ms,500ms,500ms,1s,1s,1s,1s,1s"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``cdrhub serve`` in its own process group; ``crash()`` SIGKILLs the whole group."""

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
                start_new_session=True,
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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.crash()


class Receiver:
    """bench/receiver.py as a subprocess, recording bodies."""

    def __init__(self, out: Path, args: argparse.Namespace, seed: int) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "receiver.py"),
                "--out",
                str(out),
                "--bodies",
                "--fail",
                str(args.fail),
                "--hang",
                str(args.hang),
                "--hang-seconds",
                str(args.timeout * 3),
                "--seed",
                str(seed),
            ],
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

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Client(threading.Thread):
    """Pushes new calls, corrections of its recent calls and exact duplicates.

    A push is retried until it gets its 200; a call's next version is pushed only after the
    previous one got its 200, so the versions of a call are stored in the order sent.
    """

    def __init__(self, port: int, stop: threading.Event, prefix: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop_event, self.prefix = port, stop, prefix
        self.random = random.Random(seed)
        self.sent: set[tuple[str, str]] = set()  # (callId, body) ever sent
        self.acked: list[tuple[str, str]] = []  # (callId, body) answered 200, in order
        self.pushes = {"new": 0, "correction": 0, "duplicate": 0}
        self.errors = 0

    def run(self) -> None:
        recent: list[tuple[str, int, str]] = []  # (callId, version, last acked body)
        n = 0
        while not self.stop_event.is_set():
            draw = self.random.random()
            if not recent or draw < 0.55:
                n += 1
                call_id, version, kind = f"{self.prefix}-{n}", 1, "new"
            else:
                index = self.random.randrange(len(recent))
                call_id, version, last = recent[index]
                if draw < 0.8:
                    version, kind = version + 1, "correction"
                else:
                    kind = "duplicate"
            if kind == "duplicate":
                body = last
            else:
                body = json.dumps(
                    {
                        "callId": call_id,
                        "direction": 2,
                        "intent": "转人工-成功",
                        "startTime": 1764000000000 + n * 1000,
                        "callDuration": version,
                        "agentName": f"agent{version}",
                    },
                    ensure_ascii=False,
                )
            self.sent.add((call_id, body))
            if not self._push_until_acked(body):
                return
            self.pushes[kind] += 1
            self.acked.append((call_id, body))
            if kind == "new":
                recent.append((call_id, version, body))
                del recent[:-20]
            else:
                recent[index] = (call_id, version, body)

    def _push_until_acked(self, body: str) -> bool:
        while not self.stop_event.is_set():
            if self._push(body):
                return True
            self.errors += 1
            time.sleep(0.05)
        return False

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


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(sql))
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql)]


def check(
    event_rows: list[tuple[Any, ...]],
    records: list[dict[str, Any]],
    clients: list[Client],
) -> dict[str, int]:
    """Compare what arrived (``records``, in arrival order) with the outbox (``event_rows``:
    seq, id, call_id, content_hash) and with what the clients sent and got acknowledged."""
    by_id = {r[1]: r for r in event_rows}
    first_ok: dict[str, int] = {}
    first_try: dict[str, int] = {}
    bodies: dict[str, str] = {}
    raws: set[tuple[str, str]] = set()
    changed = unknown = 0
    for position, record in enumerate(records):
        event_id = record["id"]
        if event_id not in by_id:
            unknown += 1
            continue
        first_try.setdefault(event_id, position)
        body = record["body"]
        if bodies.setdefault(event_id, body) != body:
            changed += 1
        if 200 <= record["status"] < 300 and event_id not in first_ok:
            first_ok[event_id] = position
            document = json.loads(body)
            if document["id"] != event_id:
                changed += 1
            raws.add((document["data"]["call"]["call_id"], document["data"]["raw"]))
    per_call: dict[str, list[tuple[int, str]]] = defaultdict(list)
    versions: dict[tuple[str, str], int] = defaultdict(int)
    for seq, event_id, call_id, content_hash in event_rows:
        per_call[call_id].append((int(seq), event_id))
        versions[(call_id, content_hash)] += 1
    out_of_order = sent_early = 0
    for chain in per_call.values():
        ids = [event_id for _, event_id in sorted(chain)]
        arrivals = [first_ok.get(i, -1) for i in ids]
        if arrivals != sorted(arrivals):
            out_of_order += 1
        for older, newer in zip(ids, ids[1:], strict=False):
            if first_try.get(newer, 1 << 60) < first_ok.get(older, 1 << 60):
                sent_early += 1
    oks = Counter(r["id"] for r in records if 200 <= r["status"] < 300)
    acked = {a for client in clients for a in client.acked}
    sent = {s for client in clients for s in client.sent}
    return {
        "events": len(event_rows),
        "requests": len(records),
        "answered_2xx": sum(1 for r in records if 200 <= r["status"] < 300),
        "answered_500": sum(1 for r in records if r["status"] == 500),
        "hung": sum(1 for r in records if r["status"] == 0),
        "delivered_twice_or_more": sum(1 for n in oks.values() if n > 1),
        "missing": sum(1 for r in event_rows if r[1] not in first_ok),
        "unknown": unknown,
        "changed": changed,
        "out_of_order": out_of_order,
        "sent_early": sent_early,
        "not_forwarded": len(acked - raws),
        "not_sent_by_a_client": len(raws - sent),
        "doubled": sum(n - 1 for n in versions.values() if n > 1),
    }


FAILURES = (
    "missing",
    "unknown",
    "changed",
    "out_of_order",
    "sent_early",
    "not_forwarded",
    "not_sent_by_a_client",
    "doubled",
    "dead",
)


def wait_delivered(url: str, receiver: Receiver, timeout: float) -> float:
    """Wait until every event in the outbox got a 2xx; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        ids = {r[0] for r in query(url, "SELECT id FROM events")}
        got = {r["id"] for r in receiver.records() if 200 <= r["status"] < 300}
        dead = query(url, "SELECT count(*) FROM forward_pending WHERE state = 'dead'")[0][0]
        if ids <= got or dead:
            break
        time.sleep(0.5)
    time.sleep(1.0)  # let anything still in flight land, so that it is checked too
    return time.monotonic() - started


def run(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="cdrhub-fwcrash-") as tmp:
        workdir = Path(tmp)
        pg_database = None
        if args.database == "postgres":
            import psycopg

            pg_database = f"cdrhub_fwcrash_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_database}"')
            url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_database}"
        else:
            url = f"sqlite:///{workdir}/fwcrash.db"
        env = {
            **os.environ,
            "CDRHUB_DATABASE_URL": url,
            "CDRHUB_TOKENS": TOKEN,
            "CDRHUB_DATA_DIR": str(workdir / "data"),
            "CDRHUB_LOG_LEVEL": "warning",
            "CDRHUB_SQLITE_BUSY_TIMEOUT_MS": "1000",
            "CDRHUB_FORWARD_RETRY_SCHEDULE": RETRY_SCHEDULE,
            "CDRHUB_WORKERS": str(args.workers),
        }
        receiver = Receiver(workdir / "received.jsonl", args, seed)
        server: Server | None = None
        try:
            subprocess.run(
                [str(BIN / "cdrhub"), "db", "upgrade"], env=env, check=True, capture_output=True
            )
            secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
            subprocess.run(
                [
                    str(BIN / "cdrhub"),
                    "forward",
                    "add",
                    "hook",
                    receiver.url,
                    "--from",
                    "beginning",
                    "--timeout",
                    str(args.timeout),
                    "--secret",
                    secret,
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            port = free_port()
            server = Server(env, port, workdir / "server.log")
            stop = threading.Event()
            clients = [
                Client(port, stop, f"c{i}-{uuid.uuid4().hex[:6]}", seed + i)
                for i in range(args.clients)
            ]
            server.start()
            for client in clients:
                client.start()
            starts = [time.time()]  # when each server life began
            for _ in range(args.kills):
                time.sleep(rng.uniform(args.min_gap, args.max_gap))
                server.crash()
                server.start()
                starts.append(time.time())
            time.sleep(args.max_gap)
            stop.set()
            stopped = time.time()
            for client in clients:
                client.join(timeout=15)
            waited = wait_delivered(url, receiver, args.drain_timeout)
            server.stop()
            receiver.stop()
            rows = query(url, "SELECT seq, id, call_id, content_hash FROM events ORDER BY seq")
            dead = query(url, "SELECT count(*) FROM forward_pending WHERE state = 'dead'")[0][0]
            records = receiver.records()
            result = check(rows, records, clients)
            # Deliveries per server life: proof that restarted servers delivered, not only
            # the last one after the clients stopped.
            bounds = [*starts, stopped]
            lives = [
                sum(1 for r in records if r["status"] == 200 and a <= r["t"] < b)
                for a, b in zip(bounds, bounds[1:], strict=False)
            ]
        finally:
            if server is not None:
                server.stop()
            if receiver.process.poll() is None:
                receiver.stop()
            if pg_database:
                import psycopg

                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
        pushes = {k: sum(c.pushes[k] for c in clients) for k in ("new", "correction", "duplicate")}
        summary = {
            "database": args.database,
            "workers": args.workers,
            "kills": args.kills,
            "seed": seed,
            "acked_pushes": pushes,
            "retried_pushes": sum(c.errors for c in clients),
            **result,
            "dead": int(dead),
            "delivered_per_life": lives,
            "drain_seconds": round(waited, 1),
        }
        print(json.dumps(summary))
        return 1 if any(summary[k] for k in FAILURES) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (1)")
    parser.add_argument("--kills", type=int, default=20, help="kill -9 this many times (20)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent senders (4)")
    parser.add_argument("--min-gap", type=float, default=0.5, help="seconds between kills, min")
    parser.add_argument("--max-gap", type=float, default=2.0, help="seconds between kills, max")
    parser.add_argument("--fail", type=float, default=0.15, help="share answered 500 (0.15)")
    parser.add_argument("--hang", type=float, default=0.05, help="share left hanging (0.05)")
    parser.add_argument("--timeout", type=float, default=0.5, help="webhook timeout, s (0.5)")
    parser.add_argument("--drain-timeout", type=float, default=120, help="seconds (120)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (kills, answers)")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
