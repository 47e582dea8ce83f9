"""The wallboard's figures against hand-computed values and against /api/stats' own function,
on both databases, at a fixed "now" in a zone that is not UTC."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cdrhub import cdr
from cdrhub.reports import stats, wallboard
from cdrhub.reports.query import CallFilter
from cdrhub.store import Push, Store
from tests.helpers.calls import call

ZONE = ZoneInfo("Asia/Shanghai")  # UTC+8: local midnight is 16:00 UTC the day before
#: 2026-12-03 10:37 local (02:37 UTC): the quarters are 09:45, 10:00, 10:15, 10:30 local.
NOW = datetime(2026, 12, 3, 10, 37, 12, tzinfo=ZONE)

CALLS = [
    # yesterday local (23:50 on Dec 2 = 15:50 UTC): not today, and outside the last hour
    call("y1", "2026-12-02T15:50:00", in_queue=0, answer=5, end=60, answered=True),
    # today 00:10 local: waits 30 s, answered (outside the 20 s service level)
    call("t1", "2026-12-02T16:10:00", in_queue=0, answer=30, end=90, answered=True),
    # 09:50 local (01:50 UTC): abandoned after 95 s (the longest wait today)
    call("t2", "2026-12-03T01:50:00", in_queue=0, end=95),
    # 10:05 local: answered in 10 s
    call("t3", "2026-12-03T02:05:00", in_queue=0, answer=10, end=70, answered=True),
    # 10:31 local: a short abandon (2 s): out of service level and abandon rate, still abandoned
    call("t4", "2026-12-03T02:31:00", in_queue=0, end=2),
    # 10:32 local: outbound, never queued
    call("t5", "2026-12-03T02:32:00", direction=1, answer=3, end=40, answered=True),
]


def _figures(store: Store) -> dict:
    return wallboard.figures(
        store, tz=ZONE, sl_seconds=20, sl_target=0.8, short_abandon_seconds=5, now=NOW
    )


@pytest.fixture
def loaded(store: Store) -> Store:
    pushes = []
    for body in CALLS:
        raw = json.dumps(body).encode()
        pushes.append(Push(cdr.parse(raw), raw))
    store.write(pushes)
    return store


def test_today_and_the_last_hour_by_hand(loaded: Store) -> None:
    got = _figures(loaded)
    assert got["alerts"] == []  # filled by the alerts package once it is merged
    assert got["sl_target"] == 0.8 and got["zone"] == "Asia/Shanghai"
    today = got["today"]
    assert (today["from"], today["to"]) == (
        "2026-12-03T00:00:00+08:00",
        "2026-12-04T00:00:00+08:00",
    )
    # t1..t5: 5 calls, answered t1 t3 t5, abandoned t2 t4 (t4 short), queued t1..t4
    assert (today["calls"], today["answered"], today["abandoned"]) == (5, 3, 2)
    # service level: within 20 s among queued minus short abandons: t3 of {t1, t2, t3}
    assert today["service_level"] == 0.3333  # 1 of 3, at the 4 places figures carry
    assert today["asa_seconds"] == pytest.approx((30 + 10) / 2)
    assert today["longest_wait_seconds"] == 95.0
    quarters = got["last_hour"]
    assert [q["from"][11:16] for q in quarters] == ["09:45", "10:00", "10:15", "10:30"]
    assert [q["calls"] for q in quarters] == [1, 1, 0, 2]
    assert [q["abandoned"] for q in quarters] == [1, 0, 0, 1]
    assert [q["service_level"] for q in quarters] == [0.0, 1.0, None, None]
    assert [q["asa_seconds"] for q in quarters] == [None, 10.0, None, None]
    assert [q["longest_wait_seconds"] for q in quarters] == [95.0, 10.0, None, 2.0]


def test_every_figure_is_the_stats_apis(loaded: Store) -> None:
    """Each period's figures equal stats.compute's (the /api/stats function) for its bounds."""
    got = _figures(loaded)
    for period in (got["today"], *got["last_hour"]):
        where = CallFilter(
            start=datetime.fromisoformat(period["from"]), end=datetime.fromisoformat(period["to"])
        )
        api = stats.compute(loaded, where, tz=ZONE, sl_seconds=20, short_abandon_seconds=5)[0]
        for name in ("calls", "answered", "abandoned", "service_level", "asa_seconds"):
            assert period[name] == api[name], (period["from"], name)


def test_no_calls_today(store: Store) -> None:
    got = _figures(store)
    assert got["today"]["calls"] == 0
    assert got["today"]["service_level"] is None and got["today"]["longest_wait_seconds"] is None
    assert len(got["last_hour"]) == 4
