"""`cdrhub simulate`: seeded synthetic traffic that passes validation and looks real."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from fastapi.testclient import TestClient

from cdrhub import cdr
from cdrhub.cli import main
from cdrhub.pull import simulate
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import Api


def test_same_seed_same_calls() -> None:
    """A seed is a data set: the same seed repeats it, another differs."""
    end = datetime(2026, 11, 25, tzinfo=UTC)
    tz = ZoneInfo("Asia/Shanghai")
    first = list(simulate.calls(50, seed=7, end=end, days=3, tz=tz))
    assert first == list(simulate.calls(50, seed=7, end=end, days=3, tz=tz))
    assert first != list(simulate.calls(50, seed=8, end=end, days=3, tz=tz))
    for body in first:
        cdr.to_record(body)  # every body is a valid push


def test_calls_come_in_start_order() -> None:
    """Calls arrive oldest first, as NXCC pushes them, so the database is laid out like real
    traffic's (exports and hourly snapshots read it in that order)."""
    end = datetime(2026, 11, 25, tzinfo=UTC)
    bodies = list(simulate.calls(500, seed=2, end=end, days=4, tz=ZoneInfo("Asia/Shanghai")))
    starts = [b["startTime"] for b in bodies]
    assert starts == sorted(starts) and len(set(starts)) > 400


def test_simulate_into_the_database(
    settings: Settings, store: Store, client: TestClient, api: Api
) -> None:
    """Simulated calls land in the database with every direction, abandons and answers."""
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    result = CliRunner().invoke(
        main, ["simulate", "--count", "2000", "--seed", "3", "--end", "2026-11-24"], env=env
    )
    assert result.exit_code == 0, result.output
    assert store.count_calls() == 2000
    groups = api("/api/stats", group_by="direction").json()["groups"]
    assert [g["key"]["direction"] for g in groups] == [0, 1, 2]
    inbound = groups[0]
    assert 0 < inbound["abandoned"] < inbound["queued"] and inbound["short_abandoned"] > 0
    assert 0.3 < inbound["service_level"] < 1 and inbound["p90_wait_seconds"] > 0
