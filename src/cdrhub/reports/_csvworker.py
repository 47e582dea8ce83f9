"""A child process that formats slices of a SQLite CSV export (see :mod:`cdrhub.reports.csvsql`).

Two threads of one process stepping two SQLite connections did not use two cores: measured
on 1,000,000 calls on the 2-core machine, the SQL formatting alone took 12-19 s on one
connection, 15-25 s on two threads (half of the CPU time in the kernel: contended locks,
most likely the process-wide mutex SQLite's allocator takes when memory statistics are on,
as in the build Python ships) and 9.6 s in two processes. So the connections that format
live in processes of their own, started as a plain script (``python _csvworker.py``: no
cdrhub import unless a time falls outside the SQL window, so it starts in tens of ms).

Protocol. stdin: one JSON line ``{"database", "tz", "batch", "timeout_ms", "slices":
[[sql, params], ...]}``, then ``pin``: the child starts a read transaction and makes its
first read, which fixes its snapshot, while the parent holds the write lock (so every
connection's snapshot is the same), and answers ``pinned``. Then, for each slice in order,
frames on stdout: ``<rows:u32><size:u32>`` and ``size`` bytes of CSV lines; ``rows`` END
ends a slice, FAILED carries an error message instead. The pipe's backpressure keeps the
child at most a pipe buffer ahead of the parent.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

FRAME = struct.Struct("<II")
END = 0xFFFFFFFF
FAILED = 0xFFFFFFFE


def _fallbacks(tz_key: str) -> tuple[Callable[[Any], str], Callable[[Any], str]]:
    """The Python formatting of times outside the SQL window (rare), imported on first use:
    the same as ``csvsql._SqliteTimes.from_ms`` / ``from_text`` in the parent."""
    formats: list[Callable[[int | None], str | None]] = []

    def from_ms(ms: Any) -> str:
        if type(ms) is not int:
            return ""
        if not formats:
            sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
            from cdrhub.reports import zones

            formats.append(zones.iso_times(ZoneInfo(tz_key)))
        return formats[0](ms) or ""

    def from_text(text: Any) -> str:
        try:
            moment = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            return ""
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return from_ms((moment - _EPOCH) // timedelta(milliseconds=1))

    return from_ms, from_text


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def run(job: dict[str, Any], control: BinaryIO, out: BinaryIO) -> None:
    conn = sqlite3.connect(job["database"], isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(job['timeout_ms'])}")
    from_ms, from_text = _fallbacks(job["tz"])
    conn.create_function("cdrhub_iso_ms", 1, from_ms, deterministic=True)
    conn.create_function("cdrhub_iso_text", 1, from_text, deterministic=True)
    if control.readline().strip() != b"pin":  # the parent could not take the write lock
        return
    conn.execute("BEGIN")
    conn.execute("SELECT call_id FROM calls LIMIT 1").fetchall()  # the snapshot, from here on
    out.write(b"pinned\n")
    out.flush()
    batch = int(job["batch"])
    for sql, params in job["slices"]:
        cursor = conn.execute(sql, params)
        while rows := cursor.fetchmany(batch):
            data = b"".join(row[0] for row in rows)
            out.write(FRAME.pack(len(rows), len(data)))
            out.write(data)
        out.write(FRAME.pack(END, 0))
        out.flush()
    conn.execute("ROLLBACK")
    conn.close()


def main() -> None:
    out = sys.stdout.buffer
    control = sys.stdin.buffer
    try:
        run(json.loads(control.readline()), control, out)
    except BrokenPipeError:  # the parent went away (a closed download): nothing to tell
        return
    except Exception as error:
        message = f"{type(error).__name__}: {error}".encode()
        out.write(FRAME.pack(FAILED, len(message)))
        out.write(message)
    out.flush()


if __name__ == "__main__":
    main()
