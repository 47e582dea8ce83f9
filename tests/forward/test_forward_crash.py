"""Short runs of bench/forward_crash.py: forwarding through kill -9 and a flaky receiver.

Every event reaches the receiver at least once, repeats carry the same id and body, and no
call's versions arrive out of order, while the server is SIGKILLed and restarted and the
receiver answers 500 or hangs past the timeout on a share of requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

CRASH = REPO / "bench" / "forward_crash.py"


def _crash(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(CRASH), "--clients", "3", "--seed", "7", *args],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, **(env or {})},
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr
    result = json.loads(lines[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    return result


def _assert_kept(result: dict[str, object]) -> None:
    assert result["events"] > 50  # type: ignore[operator]
    pushes = result["acked_pushes"]
    assert isinstance(pushes, dict) and pushes["correction"] > 0 and pushes["duplicate"] > 0
    assert result["answered_500"] and result["hung"]  # the receiver did fail and hang
    for key in ("missing", "unknown", "changed", "out_of_order", "sent_early", "dead"):
        assert result[key] == 0, key
    assert (result["not_forwarded"], result["doubled"]) == (0, 0)
    lives = result["delivered_per_life"]
    assert isinstance(lives, list)
    # A restarted server delivered too, not only the last one after the pushes stopped.
    assert any(lives[1:-1]), lives


def test_sqlite_forwarding_survives_kill_9() -> None:
    _assert_kept(_crash("--kills", "4"))


@pytest.mark.postgres
def test_postgres_forwarding_survives_kill_9(postgres_database: str) -> None:
    """Two workers on PostgreSQL: the leases move between processes across the kills."""
    result = _crash(
        "--database",
        "postgres",
        "--workers",
        "2",
        "--kills",
        "4",
        env={"CDRHUB_BENCH_POSTGRES_URL": os.environ["CDRHUB_TEST_POSTGRES_URL"]},
    )
    _assert_kept(result)
