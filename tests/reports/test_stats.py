"""Every metric of docs/metrics.md, checked against values computed by hand on a fixed data set.

The data set (New York time; clocks go back from 02:00 EDT to 01:00 EST on 2026-11-01):

====  =======================  ===  =====  =========================================  ====  =====
call  start (UTC)              dir  ans.   queue / answer / end (s after start)        ring  price
====  =======================  ===  =====  =========================================  ====  =====
A     2026-11-01 05:30 (01:30 EDT)  0  yes  in 2, out 12, answer 12, end 72            3     1.2
B     2026-11-01 06:30 (01:30 EST)  0  yes  in 0, answer 30, end 150 (no out)          5     2.0
C     2026-11-01 14:00              0  no   in 0, out 3, end 3 (short abandon)         -     -
D     2026-11-01 15:00              0  -    in 0, queueDuration 40 only (abandon)       -     -
E     2026-11-02 04:30 (Nov 1 local) 1 yes  answer 5, end 35 (not queued)              2     0.5
F     2026-11-02 05:30 (Nov 2 local) 2 no   nothing                                    -     0.1
G     2026-10-31 23:00              0  yes  in 0, out 8, end 100 (no answerTime)       -     -
H     2026-11-01 16:00              0  yes  in 0, out 20, answer 20, end 65            4     1.0
I     2026-11-03 12:00 (outside the range [2026-10-31, 2026-11-03) local)
X     no start time at all (outside any range)
====  =======================  ===  =====  =========================================  ====  =====

wait: A 10, B 30, C 3, D 40, G 8, H 20. speed of answer: A 10, B 30, H 20. talk: A 60, B 120,
E 30, H 45.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cdrhub import cdr
from cdrhub.cli import main
from cdrhub.pull import simulate
from cdrhub.reports import stats
from cdrhub.reports.query import CallFilter
from cdrhub.reports.stats import FIGURE_DIGITS, METRICS, percentiles
from cdrhub.settings import Settings
from cdrhub.store import Push as StorePush
from cdrhub.store import Store
from tests.helpers import Api, Push
from tests.helpers.calls import call, ms

NY = "America/New_York"
RANGE = {"from_": "2026-10-31", "to": "2026-11-03", "tz": NY}

DATA = [
    call(
        "A",
        "2026-11-01T05:30:00",
        in_queue=2,
        out_queue=12,
        answer=12,
        end=72,
        answered=True,
        direction=0,
        ringDuration=3,
        totalCustomerPrice=1.2,
        agentName="a1",
        hangupBy=1,
    ),
    call(
        "B",
        "2026-11-01T06:30:00",
        in_queue=0,
        answer=30,
        end=150,
        answered=True,
        direction=0,
        ringDuration=5,
        totalCustomerPrice="2.0",
        agentName="a1",
    ),
    call("C", "2026-11-01T14:00:00", in_queue=0, out_queue=3, end=3, answered=False, direction=0),
    call("D", "2026-11-01T15:00:00", in_queue=0, queueDuration=40, direction="0"),
    call(
        "E",
        "2026-11-02T04:30:00",
        answer=5,
        end=35,
        answered=True,
        direction=1,
        ringDuration=2,
        totalCustomerPrice=0.5,
        agentName="a2",
    ),
    call(
        "F",
        "2026-11-02T05:30:00",
        direction=2,
        answered=False,
        totalCustomerPrice=0.1,
        intent="转人工-成功",
        taskId="T1",
        agentName="",
    ),
    call("G", "2026-10-31T23:00:00", in_queue=0, out_queue=8, end=100, answered=True, direction=0),
    call(
        "H",
        "2026-11-01T16:00:00",
        in_queue=0,
        out_queue=20,
        answer=20,
        end=65,
        answered=True,
        direction=0,
        ringDuration=4,
        totalCustomerPrice=1.0,
        agentName="a2",
    ),
    call("I", "2026-11-03T12:00:00", answered=True, direction=0, totalCustomerPrice=9.0),
    call("X", None, answered=True),
]

WHOLE = {
    "calls": 8,
    "answered": 5,
    "queued": 6,
    "abandoned": 2,
    "short_abandoned": 1,
    "answer_rate": 5 / 8,
    "abandon_rate": 1 / 5,
    "service_level": 2 / 5,
    "asa_seconds": 20.0,
    "avg_wait_seconds": 111 / 6,
    "p90_wait_seconds": 35.0,
    "talk_seconds": 255.0,
    "avg_talk_seconds": 63.75,
    "p90_talk_seconds": 102.0,
    "avg_ring_seconds": 3.5,
    "cost_total": 4.8,
    "cost_per_answered_minute": 4.8 / (255 / 60),
}


@pytest.fixture
def loaded(push: Push) -> None:
    """The data set above, pushed the way NXCC pushes it."""
    for body in DATA:
        assert push(body).status_code == 200, body


def same(group: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected metric equal (floats as rounded to FIGURE_DIGITS places, the precision
    the figures leave with); exactly the metric keys plus `key`."""
    assert set(group) == {"key", *METRICS}
    for name, value in expected.items():
        if value is None or isinstance(value, int) and not isinstance(value, bool):
            assert group[name] == value, name
        else:
            assert group[name] == pytest.approx(round(value, FIGURE_DIGITS), abs=1e-9), name


def test_every_metric_over_the_whole_selection(api: Api, loaded: None) -> None:
    """Without grouping: one group, key {}, each metric equal to its hand-computed value."""
    response = api("/api/stats", **RANGE)
    assert response.status_code == 200, response.text
    [group] = response.json()["groups"]
    assert group["key"] == {}
    same(group, WHOLE)


def test_days_follow_the_call_center_zone_through_dst(api: Api, loaded: None) -> None:
    """Day buckets are New York dates: E (04:30 UTC on the 2nd) is still 1 November there."""
    groups = api("/api/stats", group_by="day", **RANGE).json()["groups"]
    assert [g["key"] for g in groups] == [
        {"day": "2026-10-31"},
        {"day": "2026-11-01"},
        {"day": "2026-11-02"},
    ]
    assert groups[0]["calls"] == 1
    same(
        groups[1],
        {
            "calls": 6,
            "answered": 4,
            "queued": 5,
            "abandoned": 2,
            "short_abandoned": 1,
            "answer_rate": 4 / 6,
            "abandon_rate": 1 / 4,
            "service_level": 2 / 4,
            "asa_seconds": 20.0,
            "avg_wait_seconds": 103 / 5,
            "p90_wait_seconds": 36.0,
            "talk_seconds": 255.0,
            "avg_ring_seconds": 3.5,
        },
    )
    # F alone: nothing queued, nothing talked; every ratio or mean with nothing to divide is null.
    same(
        groups[2],
        {
            "calls": 1,
            "answered": 0,
            "queued": 0,
            "abandoned": 0,
            "short_abandoned": 0,
            "answer_rate": 0.0,
            "abandon_rate": None,
            "service_level": None,
            "asa_seconds": None,
            "avg_wait_seconds": None,
            "p90_wait_seconds": None,
            "talk_seconds": 0.0,
            "avg_talk_seconds": None,
            "p90_talk_seconds": None,
            "avg_ring_seconds": None,
            "cost_total": 0.1,
            "cost_per_answered_minute": None,
        },
    )
    utc = api("/api/stats", group_by="day", **{**RANGE, "tz": "UTC"}).json()["groups"]
    assert {"day": "2026-11-02"} in [g["key"] for g in utc]
    assert sum(g["calls"] for g in utc if g["key"]["day"] == "2026-11-02") == 2


def test_the_repeated_hour_is_two_buckets(api: Api, loaded: None) -> None:
    """On the night clocks go back, 01:00 EDT and 01:00 EST are separate hours."""
    groups = api("/api/stats", group_by="hour", **RANGE).json()["groups"]
    keys = [g["key"]["hour"] for g in groups]
    assert "2026-11-01T01:00-04:00" in keys and "2026-11-01T01:00-05:00" in keys
    by_hour = {g["key"]["hour"]: g for g in groups}
    assert by_hour["2026-11-01T01:00-04:00"]["calls"] == 1  # A
    assert by_hour["2026-11-01T01:00-05:00"]["calls"] == 1  # B
    assert by_hour["2026-11-01T23:00-05:00"]["calls"] == 1  # E


def _hour_key(ms: int, tz: ZoneInfo) -> str:
    """The hour key of an instant, from zoneinfo itself: the local hour and its offset."""
    local = datetime.fromtimestamp(ms / 1000, tz)
    offset = local.strftime("%z")
    return local.strftime("%Y-%m-%dT%H:00") + f"{offset[:3]}:{offset[3:]}"


def _transitions(zone: str, year: int) -> list[int]:
    """The instants (epoch ms) the zone's offset changes in ``year``, found by zoneinfo:
    hour by hour, then the minute within the hour (offsets change on whole minutes)."""
    tz = ZoneInfo(zone)

    def offset(ms: int) -> Any:
        return datetime.fromtimestamp(ms / 1000, tz).utcoffset()

    start, hour = int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000), 3_600_000
    found = []
    for h in range(start, start + 366 * 24 * hour, hour):
        if offset(h) != offset(h + hour):
            found.append(next(m for m in range(h, h + hour + 1, 60_000) if offset(m) != offset(h)))
    return found


@pytest.mark.parametrize("zone", [NY, "Australia/Lord_Howe"])
def test_calls_exactly_on_a_transition_get_the_hour_that_exists(
    api: Api, push: Push, zone: str
) -> None:
    """A call at the very instant clocks change (spring and autumn), and a millisecond either
    side, lands in the hour the zone's clock shows then, with that instant's offset: never in
    an hour that does not exist that night (02:00-05:00 on a New York spring night). Lord
    Howe moves by 30 minutes, off the UTC hour."""
    tz = ZoneInfo(zone)
    instants = _transitions(zone, 2026)
    assert len(instants) == 2  # spring and autumn
    times = [t + d for t in instants for d in (-1, 0, 1)]
    for n, moment in enumerate(times):
        assert push({"callId": f"dst-{n}", "startTime": moment}).status_code == 200
    window = {"from": str(instants[0] - 86_400_000), "to": str(instants[1] + 86_400_000)}
    for group_by in ("hour", "hour,direction"):
        groups = api("/api/stats", group_by=group_by, tz=zone, **window).json()["groups"]
        counted = {g["key"]["hour"]: g["calls"] for g in groups}
        expected: dict[str, int] = {}
        for moment in times:
            key = _hour_key(moment, tz)
            expected[key] = expected.get(key, 0) + 1
        assert counted == expected, group_by


def test_week_and_month_keys(api: Api, loaded: None) -> None:
    """Weeks are keyed by their Monday (ISO weeks), months by year-month, both local."""
    weeks = api("/api/stats", group_by="week", **RANGE).json()["groups"]
    assert [(g["key"]["week"], g["calls"]) for g in weeks] == [
        ("2026-10-26", 7),
        ("2026-11-02", 1),
    ]
    months = api("/api/stats", group_by="month", **RANGE).json()["groups"]
    assert [(g["key"]["month"], g["calls"]) for g in months] == [("2026-10", 1), ("2026-11", 7)]


def test_group_by_fields_and_combined(api: Api, loaded: None) -> None:
    """Field groups use the stored values (null last); a time and a field group combine."""
    groups = api("/api/stats", group_by="direction", **RANGE).json()["groups"]
    assert [(g["key"]["direction"], g["calls"]) for g in groups] == [(0, 6), (1, 1), (2, 1)]
    agents = api("/api/stats", group_by="agent", **RANGE).json()["groups"]
    assert [(g["key"]["agent"], g["calls"]) for g in agents] == [("a1", 2), ("a2", 2), (None, 4)]
    same(agents[0], {"talk_seconds": 180.0, "avg_talk_seconds": 90.0, "cost_total": 3.2})
    combined = api("/api/stats", group_by="day,taskId", **RANGE).json()["groups"]
    assert {"day": "2026-11-02", "task_id": "T1"} in [g["key"] for g in combined]
    intents = api("/api/stats", group_by="intent", **RANGE).json()["groups"]
    assert intents[0]["key"] == {"intent": "转人工-成功"}


def test_thresholds_can_be_overridden_per_request(api: Api, loaded: None) -> None:
    """sl_seconds moves the service level; short_abandon_seconds moves what counts as short."""
    [group] = api("/api/stats", sl_seconds=30, **RANGE).json()["groups"]
    assert group["service_level"] == pytest.approx(3 / 5)
    [group] = api("/api/stats", short_abandon_seconds=2, **RANGE).json()["groups"]
    same(
        group,
        {"short_abandoned": 0, "abandon_rate": 2 / 6, "service_level": 2 / 6},
    )
    [group] = api("/api/stats", short_abandon_seconds=3.5, **RANGE).json()["groups"]
    assert group["short_abandoned"] == 1


@pytest.mark.parametrize(("short", "sl"), [(None, None), (2.5, 7), (0, 0)])
def test_waits_exactly_on_a_threshold(
    api: Api, push: Push, settings: Settings, short: float | None, sl: float | None
) -> None:
    """docs/metrics.md: a short abandon waited *less* than the threshold, a call answered
    *within* the service level at most N seconds after queueing. Waits of exactly the
    threshold, and one millisecond either side, in the report and in each call's detail."""
    short_s = settings.short_abandon_seconds if short is None else short
    sl_s = settings.service_level_seconds if sl is None else sl
    base = ms("2026-11-24T03:00:00")
    abandons, answers = {}, {}
    for n, delta in enumerate((-1, 0, 1)):
        start = base + n * 60_000
        wait = int(short_s * 1000) + delta
        if wait >= 0:
            abandons[f"ab{delta}"] = wait
            left = start + wait
            push({"callId": f"ab{delta}", "startTime": start, "inQueueTime": start,
                  "outQueueTime": left, "endTime": left, "answered": False})  # fmt: skip
        soa = int(sl_s * 1000) + delta
        if soa >= 0:
            answers[f"an{delta}"] = soa
            push({"callId": f"an{delta}", "startTime": start + 1, "inQueueTime": start + 1,
                  "answerTime": start + 1 + soa, "endTime": start + 1 + soa + 30_000,
                  "answered": True})  # fmt: skip
    if float(short_s).is_integer():  # the wait as whole seconds only: exactly the threshold
        abandons["qd"] = int(short_s) * 1000
        push({"callId": "qd", "startTime": base, "inQueueTime": base,
              "queueDuration": int(short_s), "answered": False})  # fmt: skip
    short_ones = [c for c, wait in abandons.items() if wait < short_s * 1000]
    within = [c for c, soa in answers.items() if soa <= sl_s * 1000]
    assert short_ones == ["ab-1"] if short_s else short_ones == []
    thresholds = {"sl_seconds": sl, "short_abandon_seconds": short}
    [group] = api("/api/stats", from_="2026-11-24", to="2026-11-25", tz="UTC",
                  **thresholds).json()["groups"]  # fmt: skip
    queued = len(abandons) + len(answers)
    assert group["short_abandoned"] == len(short_ones)
    assert group["service_level"] == round(len(within) / (queued - len(short_ones)), FIGURE_DIGITS)
    for call_id in abandons:
        derived = api(f"/api/calls/{call_id}").json()["derived"]
        # The detail uses the configured threshold (it takes no per-request one).
        expected = abandons[call_id] < settings.short_abandon_seconds * 1000
        assert derived["short_abandoned"] is expected, call_id


def test_default_thresholds_and_zone_come_from_settings(settings: Settings, push: Push) -> None:
    """CDRHUB_TIMEZONE and the threshold settings apply when the request does not say."""
    from cdrhub.app import create_app
    from cdrhub.auth.apikeys import create_key
    from cdrhub.store import open_store

    custom = settings.model_copy(
        update={"timezone": NY, "service_level_seconds": 30, "short_abandon_seconds": 2}
    )
    for body in DATA:
        push(body)
    handle = open_store(settings.database_url)
    key = create_key(handle, "t")[1]
    handle.close()
    with TestClient(create_app(custom)) as other:
        response = other.get(
            "/api/stats",
            params={"from": "2026-10-31", "to": "2026-11-03", "group_by": "day"},
            headers={"Authorization": f"Bearer {key}"},
        )
    groups = response.json()["groups"]
    assert [g["key"]["day"] for g in groups] == ["2026-10-31", "2026-11-01", "2026-11-02"]
    assert groups[1]["short_abandoned"] == 0 and groups[1]["service_level"] == pytest.approx(3 / 5)


def test_filters_apply_to_stats(api: Api, loaded: None) -> None:
    """The /api/calls filters narrow the statistics too."""
    [group] = api("/api/stats", direction="inbound", answered="true", **RANGE).json()["groups"]
    assert group["calls"] == 4  # A, B, G, H
    [group] = api("/api/stats", agent="a1", **RANGE).json()["groups"]
    same(group, {"calls": 2, "talk_seconds": 180.0, "cost_total": 3.2})


def test_no_calls_gives_zero_counts_and_null_ratios(api: Api, loaded: None) -> None:
    """Over an empty range there is still one ungrouped row: counts 0, ratios and means null."""
    [group] = api("/api/stats", from_="2020-01-01", to="2020-01-02").json()["groups"]
    assert group["calls"] == 0 and group["answer_rate"] is None and group["asa_seconds"] is None
    assert group["talk_seconds"] == 0 and group["cost_total"] == 0
    assert api("/api/stats", from_="2020-01-01", to="2020-01-02", group_by="day").json() == {
        "groups": []
    }


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("group_by", "year"),
        ("group_by", "day,hour"),
        ("group_by", "agent,agent"),
        ("sl_seconds", "-1"),
        ("short_abandon_seconds", "abc"),
        ("tz", "Mars/Olympus"),
        ("from", "yesterday"),
        ("direction", "sideways"),
        ("grouping", "day"),
    ],
)
def test_invalid_parameters_are_422_naming_them(api: Api, param: str, value: str) -> None:
    """A bad or unknown stats parameter is a 422 whose `fields` names it."""
    response = api("/api/stats", **{param: value})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == param


def test_percentile_matches_postgresql_percentile_cont(store: Store) -> None:
    """Our percentiles equal PostgreSQL's percentile_cont on awkward samples, per group."""
    samples = [[7000], [1000, 2000], [3000, 8000, 10000, 20000, 30000, 40000], [5, 1, 4, 4, 9500]]
    group = np.repeat(np.arange(len(samples)), [len(s) for s in samples])
    values = np.concatenate([np.array(s, np.int64) for s in samples])
    if store.kind != "postgresql":
        assert percentiles(group, values, 5, 0.9) == [7.0, 1.9, 35.0, pytest.approx(5.702), None]
        assert percentiles(group[:0], values[:0], 1, 0.9) == [None]
        return
    from sqlalchemy import text

    with store.read_engine.connect() as conn:
        for fraction in (0.5, 0.9, 0.95):
            expected = [
                conn.execute(
                    text(
                        "SELECT percentile_cont(CAST(:f AS float8)) WITHIN GROUP (ORDER BY v) "
                        "FROM unnest(CAST(:vs AS float8[])) AS v"
                    ),
                    {"f": fraction, "vs": [v / 1000 for v in sample]},
                ).scalar_one()
                for sample in samples
            ]
            assert percentiles(group, values, len(samples), fraction) == pytest.approx(expected)


def test_cli_stats_json_csv_and_table(settings: Settings, loaded: None, api: Api) -> None:
    """`cdrhub stats` answers what the API answers, as JSON, CSV or a table."""
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    args = ["stats", "--from", "2026-10-31", "--to", "2026-11-03", "--tz", NY, "--group-by", "day"]
    runner = CliRunner()
    result = runner.invoke(main, [*args, "--format", "json"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    api_groups = api("/api/stats", group_by="day", **RANGE).json()["groups"]
    assert json.loads(result.output)["groups"] == api_groups
    result = runner.invoke(main, [*args, "--format", "csv"], env=env, catch_exceptions=False)
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["day"] for r in rows] == ["2026-10-31", "2026-11-01", "2026-11-02"]
    assert rows[2]["abandon_rate"] == "" and rows[1]["calls"] == "6"
    result = runner.invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0 and "2026-11-01" in result.output and "service" in result.output
    bad = runner.invoke(main, [*args, "--direction", "9"], env=env)
    assert bad.exit_code != 0 and "direction" in bad.output


@pytest.mark.parametrize("name", ["agent", "hangup_reason", "task_id", "intent", "direction"])
def test_count_by_equals_the_calls_of_a_full_report(store: Store, name: str) -> None:
    """The overview's light count per value is the full report's ``calls`` per group."""
    utc = ZoneInfo("UTC")
    bodies = simulate.calls(3000, seed=4, end=datetime(2026, 11, 25, tzinfo=UTC), days=3, tz=utc)
    raws = [json.dumps(b, ensure_ascii=False).encode() for b in bodies]
    store.write([StorePush(cdr.parse(raw), raw) for raw in raws])
    facts = stats.select_facts(store, CallFilter(), (name,))
    full = stats.aggregate(facts, (name,), tz=utc, sl_seconds=20, short_abandon_seconds=5)
    counted = stats.count_by(facts, name, utc)
    assert len(counted) > 2
    assert counted == [(g["key"][name], g["calls"]) for g in full]  # the same order too


def test_a_report_without_percentiles_has_every_other_metric_unchanged(store: Store) -> None:
    """The overview's lighter report leaves out only the p90 metrics, keys and all."""
    utc = ZoneInfo("UTC")
    bodies = simulate.calls(2000, seed=5, end=datetime(2026, 11, 25, tzinfo=UTC), days=2, tz=utc)
    raws = [json.dumps(b, ensure_ascii=False).encode() for b in bodies]
    store.write([StorePush(cdr.parse(raw), raw) for raw in raws])
    facts = stats.select_facts(store, CallFilter(), ("agent",))
    for names in ((), ("day",), ("agent",)):
        full = stats.aggregate(facts, names, tz=utc, sl_seconds=20, short_abandon_seconds=5)
        light = stats.aggregate(
            facts, names, tz=utc, sl_seconds=20, short_abandon_seconds=5, with_percentiles=False
        )
        assert full[0]["p90_wait_seconds"] is not None
        for f in full:
            del f["p90_wait_seconds"], f["p90_talk_seconds"]
        assert light == full


@pytest.mark.parametrize("columns", [100, 200])
def test_cli_stats_table_fits_the_terminal(settings: Settings, loaded: None, columns: int) -> None:
    """In a 100- or 200-column terminal every figure shows whole (no "…"), rates as
    percentages, times as durations, at the precision docs/metrics.md states."""
    env = {
        "CDRHUB_DATABASE_URL": settings.database_url,
        "CDRHUB_TOKENS": "",
        "COLUMNS": str(columns),
    }
    for group_by in ("", "day", "agent"):
        args = ["stats", "--from", "2026-10-31", "--to", "2026-11-03", "--tz", NY]
        result = CliRunner().invoke(
            main, [*args, "--group-by", group_by] if group_by else args, env=env
        )
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert max(len(line) for line in lines) <= columns, group_by
        assert "…" not in result.output, group_by
        if not group_by:
            text = result.output
            for shown in ("62.5%", "20.0%", "40.0%", "20.0s", "18.5s", "4m 15s", "1m 04s", "4.80"):
                assert shown in text, shown
            assert "1.1294" in text and "0.625" not in text and "255.000" not in text


def test_json_and_csv_carry_rounded_figures(settings: Settings, loaded: None) -> None:
    """No float noise in JSON or CSV: every figure has at most FIGURE_DIGITS places."""
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    args = ["stats", "--from", "2026-10-31", "--to", "2026-11-03", "--tz", NY]
    result = CliRunner().invoke(main, [*args, "--format", "csv"], env=env)
    row = next(csv.DictReader(io.StringIO(result.output)))
    assert row["cost_per_answered_minute"] == "1.1294" and row["avg_wait_seconds"] == "18.5"
    result = CliRunner().invoke(main, [*args, "--format", "json"], env=env)
    for name, value in json.loads(result.output)["groups"][0].items():
        if isinstance(value, float):
            assert value == round(value, FIGURE_DIGITS), name
