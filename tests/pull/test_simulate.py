"""`cdrhub simulate`: seeded synthetic traffic that passes validation and looks real."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
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


def test_no_call_ends_after_end() -> None:
    """A database filled "until now" has no future calls: every call started and ended by
    ``end``, even when ``end`` is mid-afternoon (the CLI passes now for today)."""
    tz = ZoneInfo("Asia/Shanghai")
    end = datetime(2026, 11, 24, 13, 20, tzinfo=tz)
    bodies = list(simulate.calls(3000, seed=5, end=end, days=7, tz=tz))
    end_ms = int(end.timestamp() * 1000)
    assert len(bodies) == 3000
    assert max(b["endTime"] for b in bodies) <= end_ms
    today = [b for b in bodies if b["startTime"] >= int(end.replace(hour=0).timestamp() * 1000)]
    assert today, "today so far has calls too"


def test_cli_never_writes_future_calls(settings: Settings, store: Store, api: Api) -> None:
    """`cdrhub simulate` with no --end fills today only up to now."""
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    result = CliRunner().invoke(main, ["simulate", "--count", "800", "--days", "2"], env=env)
    assert result.exit_code == 0, result.output
    now_ms = datetime.now(UTC).timestamp() * 1000
    items = api("/api/calls", limit=5).json()["items"]
    assert items and all(item["start_time_ms"] <= now_ms for item in items)
    assert all(item["end_time_ms"] <= now_ms for item in items)


def test_every_call_agrees_with_itself() -> None:
    """Status, reason, Q.850 code, hangupBy, durations, queue times and cost agree: an
    answered call never says NO_ANSWER or USER_BUSY, an unanswered one never talks."""
    tz = ZoneInfo("Asia/Shanghai")
    end = datetime(2026, 11, 25, tzinfo=UTC)
    bodies = list(simulate.calls(4000, seed=11, end=end, days=14, tz=tz))
    seen = set()
    for b in bodies:
        status, reason, code = b["callStatus"], b["hangupReason"], b["hangupCode"]
        seen.add((b["direction"], status))
        assert b["startTime"] <= b.get("ringTime", b["startTime"]) <= b["endTime"]
        if b["answered"]:
            assert (status, reason, code) == ("ANSWERED", "NORMAL_CLEARING", 16)
            talk = (b["endTime"] - b["answerTime"]) // 1000
            assert b["callDuration"] == talk > 0
            assert b["totalCustomerPrice"] > 0
            assert (b["answerTime"] - b["ringTime"]) // 1000 == b["ringDuration"]
        else:
            assert status != "ANSWERED" and reason != "NORMAL_CLEARING" and code != 16
            assert "answerTime" not in b and b["callDuration"] == 0
            assert b["totalCustomerPrice"] == 0 and "recordUrl" not in b
            assert not b.get("intent")
        assert (reason, code) in {
            ("NORMAL_CLEARING", 16),
            ("ORIGINATOR_CANCEL", 487),
            ("NO_ANSWER", 19),
            ("USER_BUSY", 17),
            ("CALL_REJECTED", 21),
            ("UNALLOCATED_NUMBER", 1),
        }
        if b["direction"] == 0:
            assert b["inQueueTime"] <= b["outQueueTime"] <= b["endTime"]
            assert b["queueDuration"] == (b["outQueueTime"] - b["inQueueTime"]) // 1000
            if not b["answered"]:
                assert (status, b["hangupBy"]) == ("ABANDONED", 1)
        if status == "NO_ANSWER":
            assert b["ringDuration"] >= 25  # rang until the timeout
        if status in ("BUSY", "REJECTED"):
            assert b["ringDuration"] < 6 and b["hangupBy"] == 1
    assert {
        (0, "ANSWERED"),
        (0, "ABANDONED"),
        (1, "NO_ANSWER"),
        (1, "BUSY"),
        (2, "ANSWERED"),
    } <= seen


def test_daily_and_weekly_shape() -> None:
    """Working hours and working days carry the traffic, as on a real call-center floor."""
    tz = ZoneInfo("Asia/Shanghai")
    end = datetime(2026, 11, 30, tzinfo=tz)  # a Monday midnight: four whole weeks before it
    bodies = list(simulate.calls(20000, seed=4, end=end, days=28, tz=tz))
    by_hour = [0] * 24
    by_weekday = [0] * 7
    for b in bodies:
        local = datetime.fromtimestamp(b["startTime"] / 1000, tz)
        by_hour[local.hour] += 1
        by_weekday[local.weekday()] += 1
    assert min(by_hour[10], by_hour[15]) > 20 * max(by_hour[2], by_hour[3])
    assert by_hour[10] > 1.3 * by_hour[12]  # the lunch dip
    weekday_mean = sum(by_weekday[:5]) / 5
    assert weekday_mean > 2 * by_weekday[6] and weekday_mean > 1.5 * by_weekday[5]


def test_too_short_a_period_says_so() -> None:
    """One day that ends a second after midnight holds no whole call: a clear error, not a hang."""
    tz = ZoneInfo("Asia/Shanghai")
    end = datetime(2026, 11, 24, 0, 0, 1, tzinfo=tz)
    with pytest.raises(simulate.NoRoomError, match="cannot hold"):
        simulate.calls(10, seed=1, end=end, days=1, tz=tz)
