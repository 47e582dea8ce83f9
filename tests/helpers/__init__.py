"""What the tests share: the test tokens, the push/API call shapes, and a real server process.

Fixtures live in ``tests/conftest.py``; everything a test imports by name lives here (and in
this package's modules: ``calls`` builds call logs, ``fake_nxcc`` is NXCC's query API,
``figures`` reads KPIs off pages, ``proxy`` is a TCP proxy that can cut connections, ``cli``
runs the command line in-process).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
"""The repository's root: bench/, docs/, test-output/ are found from here."""

POSTGRES_ENV = "CDRHUB_TEST_POSTGRES_URL"
REQUIRE_ENV = "CDRHUB_TEST_REQUIRE_POSTGRES"
TOKEN = "test-token-0123456789"
OTHER_TOKEN = "rotated-token-9876543210"

Push = Callable[..., httpx.Response]
Api = Callable[..., httpx.Response]


def locked_sqlite(tmp_path: Path, busy_timeout_ms: int) -> tuple[Any, sqlite3.Connection]:
    """Settings on a new, migrated SQLite file (no spool: the database itself is under test),
    and a second connection that can take its write lock from outside the app."""
    from cdrhub.settings import Settings
    from cdrhub.store import open_store

    url = f"sqlite:///{tmp_path}/locked.db"
    setup = open_store(url)
    setup.upgrade()
    setup.close()
    settings = Settings(
        database_url=url,
        tokens=[TOKEN],
        data_dir=tmp_path / "data",
        sqlite_busy_timeout_ms=busy_timeout_ms,
        spool=False,
    )
    return settings, sqlite3.connect(tmp_path / "locked.db", isolation_level=None)


def empty_postgres(url: str) -> None:
    """Give a test an empty database: drop everything a previous test created."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real ``cdrhub serve`` process (uvicorn, httptools) on a loopback port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cdrhub", "serve", "--port", str(self.port)],
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cdrhub serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"cdrhub serve did not start: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
