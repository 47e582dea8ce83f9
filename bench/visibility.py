"""How long after its 200 is a push visible to reads? Paced pushes, and a reader that looks.

Starts ``cdrhub serve`` on SQLite (``--journal`` for CDRHUB_JOURNAL=true), sends pushes at a
fixed rate from several keep-alive connections, and notes when each got its 200. A reader
thread queries the database file every 2 ms for the callIds answered and not seen yet (the
same row ``/api/calls/{id}`` returns) and notes when each appears. Prints p50, p99 and max
of (seen - answered) in ms; the reader's own polling adds up to 2 ms.

    python bench/visibility.py --journal --rate 500 --duration 20
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
TOKEN = "bench-token-0123456789"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="pushes per second (500)")
    parser.add_argument("--duration", type=float, default=20, help="seconds (20)")
    parser.add_argument("--connections", type=int, default=8, help="sending connections (8)")
    parser.add_argument("--journal", action="store_true", help="CDRHUB_JOURNAL=true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdrhub-vis-") as tmp:
        db = Path(tmp) / "vis.db"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {
            **os.environ,
            "CDRHUB_DATABASE_URL": f"sqlite:///{db}",
            "CDRHUB_TOKENS": TOKEN,
            "CDRHUB_DATA_DIR": f"{tmp}/data",
            "CDRHUB_JOURNAL": "true" if args.journal else "false",
        }
        subprocess.run([str(BIN / "cdrhub"), "db", "upgrade"], env=env, check=True)
        with (Path(tmp) / "server.log").open("wb") as log:
            server = subprocess.Popen(
                [str(BIN / "cdrhub"), "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait(port)
            result = _run(port, db, args)
            status = Path(f"/proc/{server.pid}/status")
            if status.exists():  # Linux: the server's resident memory after the run
                rss = next(li for li in status.read_text().splitlines() if li.startswith("VmRSS"))
                result["server_rss_mb"] = round(int(rss.split()[1]) / 1024, 1)
            print(json.dumps(result))
        finally:
            server.terminate()
            server.wait(30)


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.1)
    sys.exit("server did not start")


def _run(port: int, db: Path, args: argparse.Namespace) -> dict[str, float]:
    answered: dict[str, float] = {}
    seen: dict[str, float] = {}
    lock = threading.Lock()
    stop = threading.Event()
    prefix = uuid.uuid4().hex[:8]
    interval = args.connections / args.rate
    started = time.monotonic()

    def send(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        count = 0
        while not stop.is_set():
            due = started + count * interval + number * interval / args.connections
            time.sleep(max(0.0, due - time.monotonic()))
            call_id = f"{prefix}-{number}-{count}"
            body = json.dumps({"callId": call_id, "callDuration": 7, "direction": 2})
            conn.request(
                "POST",
                "/cc/callback",
                body,
                {"token": TOKEN, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                with lock:
                    answered[call_id] = time.monotonic()
            count += 1

    def read() -> None:
        conn = sqlite3.connect(db)
        while not sent.is_set() or len(seen) < len(answered):
            with lock:
                waiting = [c for c in answered if c not in seen]
            for start in range(0, len(waiting), 500):
                part = waiting[start : start + 500]
                marks = ",".join("?" * len(part))
                rows = conn.execute(f"SELECT call_id FROM calls WHERE call_id IN ({marks})", part)
                now = time.monotonic()
                for (call_id,) in rows:
                    seen[call_id] = now
            if stop.is_set() and time.monotonic() - stopped[0] > 30:
                break
            time.sleep(0.002)

    stopped = [0.0]
    sent = threading.Event()  # every sender has had its last answer
    senders = [threading.Thread(target=send, args=(n,)) for n in range(args.connections)]
    reader = threading.Thread(target=read)
    for thread in [*senders, reader]:
        thread.start()
    time.sleep(args.duration)
    stop.set()
    stopped[0] = time.monotonic()
    for thread in senders:
        thread.join()
    sent.set()
    reader.join()
    delays = sorted((seen[c] - answered[c]) * 1000 for c in answered if c in seen)
    achieved = len(answered) / args.duration
    return {
        "offered_per_s": args.rate,
        "achieved_per_s": round(achieved),
        "answered": len(answered),
        "never_seen": len(answered) - len(delays),
        "p50_ms": round(statistics.median(delays), 1),
        "p99_ms": round(delays[int(len(delays) * 0.99) - 1], 1),
        "max_ms": round(delays[-1], 1),
    }


if __name__ == "__main__":
    main()
