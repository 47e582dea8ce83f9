"""Short runs of bench/crash.py: kill -9 at random moments loses and doubles nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

CRASH = REPO / "bench" / "crash.py"


def _crash(*args: str, env: dict[str, str] | None = None) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, str(CRASH), "--clients", "3", "--seed", "7", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    return result


def test_sqlite_survives_kill_9() -> None:
    """Every acknowledged push is stored exactly once after repeated kill -9 on SQLite."""
    result = _crash("--kills", "4")
    assert result["acked"] > 100
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert result["stored"] == result["acked"]


def test_sqlite_with_the_journal_survives_kill_9() -> None:
    """The same with the push journal and its applier process: every push answered from the
    journal is in the tables exactly once after repeated kill -9 of the server."""
    result = _crash("--kills", "4", "--journal")
    assert result["acked"] > 100
    assert (result["lost"], result["duplicated"]) == (0, 0)
    assert result["stored"] == result["acked"]


@pytest.mark.postgres
def test_postgres_outage_and_kill_9(postgres_database: str) -> None:
    """PostgreSQL stopped mid-run (pushes spooled) plus kill -9: nothing lost or doubled."""
    if not Path("/etc/postgresql").is_dir() or os.geteuid() != 0:
        pytest.skip("needs the local PostgreSQL cluster and root to stop and start it")
    admin = os.environ["CDRHUB_TEST_POSTGRES_URL"]
    try:
        result = _crash(
            "--database",
            "postgres",
            "--postgres-outage",
            "--kills",
            "6",
            env={"CDRHUB_BENCH_POSTGRES_URL": admin},
        )
    finally:
        # Whatever happened, leave PostgreSQL running for the rest of the suite (and CI).
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            check=False,
        )
    assert result["acked"] > 100
    assert (result["lost"], result["duplicated"]) == (0, 0)
