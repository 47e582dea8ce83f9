"""How much memory does one ``cdrhub serve`` hold after a million pushes?

Starts ``cdrhub serve`` (default settings, SQLite) on an empty database, pushes realistic call
logs with wrk and bench/push.lua in 30 s runs until ``--pushes`` were answered, then reads the
server's VmRSS and VmHWM from /proc (and its journal applier's, with ``--journal``).

``--spread-days`` is how far back the calls' start times reach. The default, 60, spreads a
million calls over 1,440 hours, about 700 an hour, as two months of a busy call center's
traffic arrive. ``--spread-days 0`` puts them all in the last ten minutes: a million calls in
one or two hours, which no call center makes, and whose hourly statistics snapshot the server
rebuilds (off the request path) from all of that hour's calls every 30 s.

    python bench/memory.py                    # direct path, spread over 60 days
    python bench/memory.py --journal
    python bench/memory.py --spread-days 0    # the one-hour burst
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "bench-token-0123456789"


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=1_000_000, help="at least this many")
    parser.add_argument("--spread-days", type=float, default=60, help="start times (60)")
    parser.add_argument("--journal", action="store_true", help="CDRHUB_JOURNAL=true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdrhub-memory-") as tmp:
        env = {
            **os.environ,
            "CDRHUB_TOKENS": TOKEN,
            "CDRHUB_DATABASE_URL": f"sqlite:///{tmp}/calls.db",
            "CDRHUB_DATA_DIR": f"{tmp}/data",
            "CDRHUB_JOURNAL": "true" if args.journal else "false",
        }
        subprocess.run([str(BIN / "cdrhub"), "db", "upgrade"], env=env, check=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with open(f"{tmp}/server.log", "wb") as log:
            server = subprocess.Popen(
                [str(BIN / "cdrhub"), "serve", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), 0.2),
                ):
                    break
                time.sleep(0.1)
            print("at start", memory(server.pid), flush=True)
            spread = str(int(args.spread_days * 86400) or 600)
            answered = 0
            while answered < args.pushes:
                out = subprocess.run(
                    [
                        "wrk",
                        "-t2",
                        "-c64",
                        "-d30s",
                        "--timeout",
                        "10s",
                        "-s",
                        str(ROOT / "bench" / "push.lua"),
                        f"http://127.0.0.1:{port}",
                        "--",
                        TOKEN,
                        "/cc/callback",
                        "-",
                        "-",
                        spread,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                result = json.loads(re.search(r"RESULT (.*)", out).group(1))  # type: ignore[union-attr]
                answered += result["requests"] - result["non2xx"]
                print(f"{answered:,} answered 200", memory(server.pid), flush=True)
            time.sleep(10)  # let the applier and the statistics refresh catch up
            with contextlib.closing(sqlite3.connect(f"{tmp}/calls.db")) as conn:
                rows = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
            report = {
                "pushes": answered,
                "rows": rows,
                "spread_days": args.spread_days,
                "journal": args.journal,
                "server": memory(server.pid),
                "applier": [memory(pid) for pid in children(server.pid)],
            }
            print(json.dumps(report), flush=True)
        except BaseException:
            # The log goes with the temporary directory: say why the server stopped first.
            tail = Path(f"{tmp}/server.log").read_text(errors="replace")[-3000:]
            print(f"server exit code {server.poll()}, its log ends:\n{tail}", file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(60)


if __name__ == "__main__":
    main()
