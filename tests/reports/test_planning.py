"""The planning reports (intervals, agents, staffing) against values computed by hand.

The data set (New York; on 2026-11-01 clocks go back from 02:00 EDT to 01:00 EST, so that
local day has 25 hours: 50 half-hour intervals, its 01:00 and 01:30 twice):

====  ====================  ===========  =====  ====================================  =====
call  start (UTC)           local        dir    queue / answer / end (s after start)  agent
====  ====================  ===========  =====  ====================================  =====
P     2026-11-01 05:40      01:40 EDT    0      in 0, answer 10, end 70 (answered)    ann
Q     2026-11-01 06:10      01:10 EST    0      in 0, out 3, end 3 (short abandon)    -
R     2026-11-01 06:20      01:20 EST    0      in 0, answer 30, end 150 (answered)   李雷
S     2026-11-01 06:25      01:25 EST    0      in 0, end 40 (abandoned, rang)        李雷
T     2026-11-01 14:00      09:00 EST    1      not answered (outbound)               ann
====  ====================  ===========  =====  ====================================  =====

Interval 01:00-01:30 EST: offered 3 (Q, R, S), answered 1, abandoned 2, short 1; service level
(speed ≤ 20 s) 0 / (3 queued − 1 short) = 0; ASA 30; AHT 120; longest wait 40.
Interval 01:30-02:00 EDT: offered 1, answered 1, service level 1/1, ASA 10, AHT 60, wait 10.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from cdrhub import cdr
from cdrhub.reports import agents, intervals, staffing
from cdrhub.reports.query import parse_filters
from cdrhub.store import Push as StorePush
from cdrhub.store import Store
from tests.helpers.calls import call

NY = ZoneInfo("America/New_York")
OPTIONS = {"tz": NY, "sl_seconds": 20.0, "short_abandon_seconds": 5.0}

DATA = [
    call("P", "2026-11-01T05:40:00", in_queue=0, answer=10, end=70, answered=True, direction=0,
         agentName="ann"),
    call("Q", "2026-11-01T06:10:00", in_queue=0, out_queue=3, end=3, answered=False, direction=0),
    call("R", "2026-11-01T06:20:00", in_queue=0, answer=30, end=150, answered=True, direction=0,
         agentName="李雷"),
    call("S", "2026-11-01T06:25:00", in_queue=0, end=40, answered=False, direction=0,
         agentName="李雷", ringDuration=20),
    call("T", "2026-11-01T14:00:00", answered=False, direction=1, agentName="ann"),
]  # fmt: skip


def _load(store: Store) -> None:
    raws = [json.dumps(b, ensure_ascii=False).encode() for b in DATA]
    store.write([StorePush(cdr.parse(raw), raw) for raw in raws])


def _interval_report(store: Store, minutes: int = 30, **raw: str) -> dict:
    where = parse_filters({"from": "2026-11-01", **raw}, NY)
    return intervals.report(store, where, minutes=minutes, **OPTIONS)


# -- the grid ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "minutes", "count"),
    [
        ("2026-11-01", 30, 50),  # clocks go back: 25 hours
        ("2026-11-01", 15, 100),
        ("2026-11-01", 60, 25),
        ("2026-03-08", 30, 46),  # clocks go forward: 23 hours
        ("2026-03-08", 15, 92),
        ("2026-11-02", 30, 48),
    ],
)
def test_a_day_has_the_intervals_its_clock_has(day: str, minutes: int, count: int) -> None:
    where = intervals.resolve_range(parse_filters({"from": day}, NY), NY)
    start, end = intervals._bounds_ms(where)
    grid = intervals.intervals(start, end, minutes, NY)
    assert len(grid) == count
    assert all(g.end_ms - g.start_ms == minutes * 60_000 for g in grid)
    assert [g.start_ms for g in grid[1:]] == [g.end_ms for g in grid[:-1]]  # no gaps


def test_the_hour_clocks_skip_is_not_listed_and_the_repeated_hour_is_listed_twice() -> None:
    spring = intervals.resolve_range(parse_filters({"from": "2026-03-08"}, NY), NY)
    labels = [g.label(NY)[0] for g in intervals.intervals(*intervals._bounds_ms(spring), 30, NY)]
    assert labels[2:5] == [
        "2026-03-08T01:00-05:00",
        "2026-03-08T01:30-05:00",
        "2026-03-08T03:00-04:00",
    ]
    fall = intervals.resolve_range(parse_filters({"from": "2026-11-01"}, NY), NY)
    labels = [g.label(NY)[0] for g in intervals.intervals(*intervals._bounds_ms(fall), 30, NY)]
    assert labels[2:7] == [
        "2026-11-01T01:00-04:00",
        "2026-11-01T01:30-04:00",
        "2026-11-01T01:00-05:00",
        "2026-11-01T01:30-05:00",
        "2026-11-01T02:00-05:00",
    ]


def test_a_half_hour_dst_shift_splits_the_hour_instead_of_moving_the_grid() -> None:
    """Lord Howe Island moves its clocks by 30 minutes: 60-minute intervals stay on the hour."""
    zone = ZoneInfo("Australia/Lord_Howe")  # 2026-10-04 02:00 -> 02:30 (+10:30 -> +11:00)
    where = intervals.resolve_range(parse_filters({"from": "2026-10-04"}, zone), zone)
    grid = intervals.intervals(*intervals._bounds_ms(where), 60, zone)
    labels = [g.label(zone) for g in grid]
    assert labels[1] == ("2026-10-04T01:00+10:30", "2026-10-04T02:30+11:00")
    assert labels[2] == ("2026-10-04T02:30+11:00", "2026-10-04T03:00+11:00")  # half an hour
    assert labels[3][0] == "2026-10-04T03:00+11:00"
    assert sum(g.end_ms - g.start_ms for g in grid) == 23.5 * 3_600_000


# -- the interval report ------------------------------------------------------------------------


def test_interval_figures_equal_the_hand_computed_ones(store: Store) -> None:
    _load(store)
    result = _interval_report(store)
    rows = result["intervals"]
    assert len(rows) == 50
    by_start = {r["start"]: r for r in rows}
    est = by_start["2026-11-01T01:00-05:00"]
    assert est["end"] == "2026-11-01T01:30-05:00"
    counts = ("offered", "answered", "queued", "abandoned", "short_abandoned")
    assert [est[k] for k in counts] == [3, 1, 3, 2, 1]
    assert est["service_level"] == 0.0
    assert est["abandon_rate"] == 0.5
    assert est["asa_seconds"] == 30.0
    assert est["aht_seconds"] == 120.0
    assert est["longest_wait_seconds"] == 40.0
    edt = by_start["2026-11-01T01:30-04:00"]
    assert (edt["offered"], edt["service_level"], edt["asa_seconds"], edt["aht_seconds"]) == (
        1, 1.0, 10.0, 60.0,
    )  # fmt: skip
    assert edt["longest_wait_seconds"] == 10.0
    nine = by_start["2026-11-01T09:00-05:00"]
    assert (nine["offered"], nine["queued"], nine["service_level"]) == (1, 0, None)
    quiet = by_start["2026-11-01T12:00-05:00"]
    assert quiet["offered"] == 0 and quiet["service_level"] is None
    assert quiet["longest_wait_seconds"] is None
    assert sum(r["offered"] for r in rows) == 5
    total = result["total"]
    assert (total["offered"], total["answered"], total["abandoned"]) == (5, 2, 2)
    assert total["service_level"] == 0.3333  # 1 of 3, at the 4 places figures carry (FIGURE_DIGITS)
    assert total["longest_wait_seconds"] == 40.0


def test_interval_report_takes_the_stats_filters(store: Store) -> None:
    _load(store)
    rows = _interval_report(store, agent="李雷")["intervals"]
    assert sum(r["offered"] for r in rows) == 2
    hourly = _interval_report(store, 60)["intervals"]
    est = next(r for r in hourly if r["start"] == "2026-11-01T01:00-05:00")
    assert est["offered"] == 3


def test_a_bad_interval_names_its_parameter() -> None:
    with pytest.raises(Exception) as error:
        intervals.parse_length("20")
    assert error.value.fields[0].field == "interval"  # type: ignore[attr-defined]
    assert intervals.parse_length(None) == 30


# -- the agent report ----------------------------------------------------------------------------


def test_agent_figures_equal_the_hand_computed_ones(store: Store) -> None:
    _load(store)
    where = parse_filters({"from": "2026-11-01", "to": "2026-11-02"}, NY)
    result = agents.report(store, where, **OPTIONS)
    assert result["answered_total"] == 2
    rows = {r["agent"]: r for r in result["agents"]}
    assert set(rows) == {"ann", "李雷"}  # the call without an agent is nobody's
    ann = rows["ann"]
    assert (ann["handled"], ann["answered"], ann["missed"]) == (2, 1, 0)  # T is outbound
    assert (ann["talk_seconds"], ann["avg_talk_seconds"], ann["answered_share"]) == (60, 60, 0.5)
    assert ann["first_call"] == "2026-11-01T01:40:00-04:00"
    assert ann["last_call"] == "2026-11-01T09:00:00-05:00"
    assert ann["by_direction"] == {
        "inbound": {"handled": 1, "answered": 1},
        "outbound": {"handled": 1, "answered": 0},
    }
    li = rows["李雷"]
    assert (li["handled"], li["answered"], li["missed"], li["talk_seconds"]) == (2, 1, 1, 120)


def test_agents_sort_by_any_column(store: Store) -> None:
    _load(store)
    where = parse_filters({"from": "2026-11-01", "to": "2026-11-02"}, NY)
    by_talk = agents.report(store, where, **OPTIONS, sort=agents.parse_sort("-talk_seconds"))
    assert [r["agent"] for r in by_talk["agents"]] == ["李雷", "ann"]
    by_name = agents.report(store, where, **OPTIONS, sort=agents.parse_sort("agent"))
    assert [r["agent"] for r in by_name["agents"]] == ["ann", "李雷"]
    with pytest.raises(Exception) as error:
        agents.parse_sort("-speed")
    assert error.value.fields[0].field == "sort"  # type: ignore[attr-defined]


# -- staffing ---------------------------------------------------------------------------------


def test_erlang_c_matches_call_centre_helpers_published_example() -> None:
    """Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example"
    (https://www.callcentrehelper.com/erlang-c-formula-example-121281.htm): 100 calls in 30
    minutes, AHT 180 s, 80 % in 20 s: traffic 10 erlangs; with 11 agents P(wait) = 0.6821 and
    service level 39.0 %; 14 agents are needed (88.8 %; 13 give 79.6 %), ASA 7.8 s."""
    traffic = 100 * 180 / 1800
    assert traffic == 10
    assert staffing.erlang_c(11, traffic) == pytest.approx(0.6821, abs=5e-5)
    assert staffing.service_level(11, traffic, 180, 20) == pytest.approx(0.390, abs=5e-4)
    assert staffing.service_level(13, traffic, 180, 20) == pytest.approx(0.796, abs=5e-4)
    assert staffing.service_level(14, traffic, 180, 20) == pytest.approx(0.888, abs=5e-4)
    assert staffing.agents_needed(traffic, 180, 0.8, 20) == 14
    assert staffing.asa(14, traffic, 180) == pytest.approx(7.8, abs=0.05)


def test_erlang_c_matches_westbay_engineers_published_example() -> None:
    """Westbay Engineers, "The Erlang-C Formula" (https://www.westbay.ndirect.co.uk/erlang.htm):
    360 calls per half hour, 240 s each, 55 agents, 15 s target: traffic 48 erlangs, occupancy
    0.873, P(wait) 0.2387, ASA 8.18 s, service level 84.59 %."""
    traffic = 360 * 240 / 1800
    assert traffic == 48
    assert staffing.erlang_c(55, traffic) == pytest.approx(0.2387, abs=5e-5)
    assert staffing.asa(55, traffic, 240) == pytest.approx(8.184, abs=5e-4)
    assert staffing.service_level(55, traffic, 240, 15) == pytest.approx(0.8459, abs=5e-5)


def test_the_recursion_equals_the_factorial_formula_exactly_and_stays_finite_at_scale() -> None:
    """Erlang C by its textbook definition, in exact fractions, against the recursion; and a
    traffic where A^N / N! overflows a double (N = 1,100) still gives a finite answer."""
    for a, n in ((3, 4), (10, 14), (48, 55), (80, 95)):
        term = [Fraction(a) ** k / math.factorial(k) for k in range(n)]
        top = Fraction(a) ** n / math.factorial(n) * Fraction(n, n - a)
        exact = top / (sum(term) + top)
        assert staffing.erlang_c(n, a) == pytest.approx(float(exact), rel=1e-12)
    needed = staffing.agents_needed(1000.0, 240, 0.8, 20)
    assert 1000 < needed < 1100
    assert staffing.service_level(needed, 1000.0, 240, 20) >= 0.8
    assert staffing.service_level(needed - 1, 1000.0, 240, 20) < 0.8


def test_staffing_per_interval_equals_the_hand_computed_plan(store: Store) -> None:
    """01:00-01:30 EST: 3 offered, AHT 120 s, 1800 s: A = 0.2 erlangs. One agent: B = 1/6,
    P(wait) = 0.2, SL = 1 - 0.2·e^(-0.8·20/120) = 0.82497, ASA = 0.2·120/0.8 = 30 s: enough
    for 80 %. For 90 %, two: B = 1/61, P(wait) = 2/110, SL = 0.98653, ASA = 1.2121 s."""
    _load(store)
    report = _interval_report(store)
    plan = staffing.from_intervals(report, 0.8, 20)
    rows = {r["start"]: r for r in plan["intervals"]}
    est = rows["2026-11-01T01:00-05:00"]
    assert est["traffic_erlangs"] == pytest.approx(0.2)
    assert est["agents_needed"] == 1
    assert est["expected_service_level"] == pytest.approx(0.824965, abs=1e-6)
    assert est["expected_asa_seconds"] == pytest.approx(30.0)
    assert est["occupancy"] == pytest.approx(0.2)
    strict = {r["start"]: r for r in staffing.from_intervals(report, 0.9, 20)["intervals"]}
    two = strict["2026-11-01T01:00-05:00"]
    assert two["agents_needed"] == 2
    assert two["expected_service_level"] == pytest.approx(0.986530, abs=1e-6)
    assert two["expected_asa_seconds"] == pytest.approx(1.212121, abs=1e-6)
    quiet = rows["2026-11-01T12:00-05:00"]
    assert quiet["agents_needed"] == 0
    nine = rows["2026-11-01T09:00-05:00"]  # one outbound call, no talk: no handle time known
    assert nine["agents_needed"] is None
    assert plan["peak_agents"] == 1


def test_sl_target_is_a_fraction_and_a_bad_one_names_itself() -> None:
    assert staffing.parse_target("0.9") == 0.9
    assert staffing.parse_target(None) == 0.8
    for bad in ("1", "0", "abc", "80", "nan"):
        with pytest.raises(Exception) as error:
            staffing.parse_target(bad)
        assert error.value.fields[0].field == "sl_target"  # type: ignore[attr-defined]
