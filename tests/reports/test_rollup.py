"""The hourly snapshots behind the statistics give exactly what a plain per-call count gives.

The oracle here is deliberately naive: one call at a time through ``callfacts.call_facts`` and
``stats.bucketer``, grouped in dicts, percentiles by sorting. The statistics must equal it on
simulated traffic full of corrections (re-pushes that move a call to another hour, flip
``answered``, change its agent), in zones with DST and with 30- and 45-minute offsets, for
snapshots that are current, stale or missing.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import event, select, update

from cdrhub import cdr
from cdrhub.ops import maintenance
from cdrhub.pull import simulate
from cdrhub.reports import callfacts, columns, layout, query, rollup, stats
from cdrhub.store import Push, Store, open_store
from cdrhub.store.cache import FactCache
from cdrhub.store.schema import calls, stat_hours

ZONES = (
    "Asia/Shanghai",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
)
END = datetime(2026, 11, 3, tzinfo=UTC)  # Nov 1: New York's clocks go back


def _push(body: dict[str, Any], source: str = "push") -> Push:
    raw = json.dumps(body, ensure_ascii=False).encode()
    return Push(cdr.parse(raw), raw, source=source)  # type: ignore[arg-type]


def _load(
    store: Store, count: int = 2500, seed: int = 7, then: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Simulated calls over 5 days, then corrections and retries, as NXCC would send them.

    ``then`` runs between the first deliveries and the corrections.
    """
    rng = random.Random(seed)
    bodies = list(
        simulate.calls(count, seed=seed, end=END, days=5, tz=ZoneInfo("America/New_York"))
    )
    for i in range(0, len(bodies), 500):
        store.write([_push(b) for b in bodies[i : i + 500]])
    if then is not None:
        then()
    corrected = []
    for body in rng.sample(bodies, 300):
        fixed = dict(body)
        shift = rng.choice((-1, 1)) * rng.randrange(1, 30) * 3_600_000
        for name in (
            "startTime",
            "ringTime",
            "inQueueTime",
            "outQueueTime",
            "answerTime",
            "endTime",
        ):
            if fixed.get(name):
                fixed[name] += shift
        fixed["answered"] = not fixed["answered"]
        fixed["agentName"] = rng.choice(("agent01@example.com", "新坐席@example.com", None))
        corrected.append(fixed)
    store.write([_push(b) for b in corrected])
    # Late retries of the superseded versions (stale) and plain retries (duplicate).
    store.write([_push(b) for b in rng.sample(bodies, 200)])
    store.write([_push(b) for b in corrected[:50]])
    # Calls without a start time and calls only known by queueDuration.
    odd = [
        {
            "callId": "no-start-1",
            "direction": 0,
            "answered": False,
            "queueDuration": 3,
            "inQueueTime": 1_762_000_000_000,
        },
        {"callId": "no-start-2", "direction": 1, "answered": True},
    ]
    store.write([_push(b) for b in odd])
    with store.read_engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls)).mappings()]


def _oracle(
    rows: Iterable[Mapping[str, Any]],
    where: query.CallFilter,
    names: tuple[str, ...],
    tz: ZoneInfo,
    sl: float,
    short: float,
) -> list[dict[str, Any]]:
    """Each metric, one call at a time."""
    start = where.start and int(where.start.timestamp() * 1000)
    end = where.end and int(where.end.timestamp() * 1000)
    buckets = {unit: stats.bucketer(unit, tz) for unit in stats.TIME_GROUPS}
    fields = {
        "direction": "direction",
        "agent": "agent_name",
        "task_id": "task_id",
        "intent": "intent",
        "hangup_by": "hangup_by",
        "hangup_reason": "hangup_reason",
    }
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = defaultdict(list)
    if not names:
        groups[()] = []
    for row in rows:
        ms = row["start_time_ms"]
        if start is not None and (ms is None or ms < start):
            continue
        if end is not None and (ms is None or ms >= end):
            continue
        if any(_differs(row, k, v) for k, v in where.values.items()):
            continue
        key = tuple(buckets[n](ms) if n in buckets else row[fields[n]] for n in names)
        groups[key].append(row)
    out = []
    for key, members in groups.items():
        facts = [callfacts.row_facts(r, short) for r in members]
        waits = [f.wait_seconds for f in facts if f.wait_seconds is not None]
        soas = [f.speed_of_answer_seconds for f in facts if f.speed_of_answer_seconds is not None]
        talks = [f.talk_seconds for f in facts if f.talk_seconds is not None]
        rings = [r["ring_duration"] for r in members if r["ring_duration"] is not None]
        cost = sum(
            r["total_customer_price"] for r in members if r["total_customer_price"] is not None
        )
        queued = sum(f.queued for f in facts)
        shorts = sum(f.short_abandoned for f in facts)
        abandoned = sum(f.abandoned for f in facts)
        answered = sum(f.answered for f in facts)
        eligible = queued - shorts
        talk = sum(talks)
        out.append(
            {
                "key": dict(zip(names, key, strict=True)),
                "calls": len(members),
                "answered": answered,
                "queued": queued,
                "abandoned": abandoned,
                "short_abandoned": shorts,
                "answer_rate": answered / len(members) if members else None,
                "abandon_rate": (abandoned - shorts) / eligible if eligible else None,
                "service_level": sum(s <= sl for s in soas) / eligible if eligible else None,
                "asa_seconds": sum(soas) / len(soas) if soas else None,
                "avg_wait_seconds": sum(waits) / len(waits) if waits else None,
                "p90_wait_seconds": _p90(waits),
                "talk_seconds": talk,
                "avg_talk_seconds": talk / len(talks) if talks else None,
                "p90_talk_seconds": _p90(talks),
                "avg_ring_seconds": sum(rings) / len(rings) if rings else None,
                "cost_total": cost,
                "cost_per_answered_minute": cost / (talk / 60) if talk else None,
            }
        )
    return sorted(out, key=lambda g: [(v is None, v) for v in g["key"].values()])


def _differs(row: Mapping[str, Any], name: str, value: Any) -> bool:
    column = {"agent": "agent_name"}.get(name, name)
    if name == "answered":
        return (row["answered"] is True) != value
    if name == "has_recording":
        return (row["record_url"] is not None) != value
    if name == "caller_prefix":
        return not (row["caller"] or "").startswith(value)
    return row[column] != value


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = 0.9 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert [g["key"] for g in got] == [w["key"] for w in want]
    for g, w in zip(got, want, strict=True):
        for metric in stats.METRICS:
            if w[metric] is None:
                assert g[metric] is None, (g["key"], metric)
            else:
                # Figures leave rounded to FIGURE_DIGITS places: within half a unit of the
                # exact per-call figure, and already at that precision.
                half = 0.5 * 10**-stats.FIGURE_DIGITS + 1e-9
                assert g[metric] == pytest.approx(w[metric], abs=half), (g["key"], metric)
                assert g[metric] == round(g[metric], stats.FIGURE_DIGITS), (g["key"], metric)


CASES = [
    ({}, ()),
    ({"from": "2026-10-29", "to": "2026-11-03"}, ("day",)),
    ({"from": "2026-10-30T07:13", "to": "2026-11-02T16:47"}, ("hour",)),
    ({"from": "2026-10-29"}, ("agent",)),
    ({"to": "2026-11-02"}, ("week", "direction")),
    ({"from": "2026-10-29", "to": "2026-11-03", "direction": "2"}, ("task_id", "intent")),
    ({"answered": "false", "hangup_by": "1"}, ("month", "hangup_reason")),
    ({"agent": "新坐席@example.com"}, ("day",)),
    ({"agent": "nobody"}, ()),
    ({"has_recording": "true", "call_status": "ANSWERED"}, ("hangup_by",)),
    ({"caller_prefix": "86138"}, ("day",)),  # answered by a scan, not the snapshots
]


@pytest.mark.parametrize("zone", ZONES)
def test_statistics_equal_a_per_call_count(store: Store, zone: str) -> None:
    rows = _load(store)
    tz = ZoneInfo(zone)
    for params, names in CASES:
        where = query.parse_filters(params, tz)
        for sl, short in ((20, 5), (7.5, 0.25)):
            got = stats.compute(
                store, where, group_by=names, tz=tz, sl_seconds=sl, short_abandon_seconds=short
            )
            _same(got, _oracle(rows, where, names, tz, sl, short))


@pytest.fixture
def cached(store: Store) -> Iterator[Store]:
    """Another handle on the test database, with a cache of decoded snapshots (as serve has)."""
    handle = open_store(store.url, fact_cache_bytes=64 * 2**20)
    yield handle
    handle.close()


def _snapshot_reads(store: Store) -> list[str]:
    """Every statement that reads saved snapshots through ``store``, from now on."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "facts" in statement and "stat_hours" in statement and "SELECT" in statement:
            seen.append(statement)

    event.listen(store.read_engine, "before_cursor_execute", record)
    return seen


def test_cached_snapshots_follow_writes_from_another_receiver(store: Store, cached: Store) -> None:
    """Hours cached before corrections arrive through another handle are never served stale,
    and a repeated report reads no saved snapshot at all."""
    tz = ZoneInfo("America/New_York")

    def warm() -> None:
        stats.compute(cached, query.CallFilter(), tz=tz, sl_seconds=20, short_abandon_seconds=5)
        assert cached.fact_cache is not None and len(cached.fact_cache) > 50

    rows = _load(store, then=warm)  # corrections written by ``store``, not ``cached``
    for params, names in CASES:
        where = query.parse_filters(params, tz)
        got = stats.compute(
            cached, where, group_by=names, tz=tz, sl_seconds=20, short_abandon_seconds=5
        )
        _same(got, _oracle(rows, where, names, tz, 20, 5))
    reads = _snapshot_reads(cached)
    for params, names in CASES:
        where = query.parse_filters(params, tz)
        got = stats.compute(
            cached, where, group_by=names, tz=tz, sl_seconds=20, short_abandon_seconds=5
        )
        _same(got, _oracle(rows, where, names, tz, 20, 5))
    assert reads == []


def test_the_cache_keeps_to_its_size_and_evicts_the_least_recently_used() -> None:
    hour = columns.from_rows([(1_700_000_000_000 + i, *[None] * 16) for i in range(1000)])
    size = FactCache(1 << 30)
    size.put(0, 1, hour)
    one = size.size_bytes
    cache = FactCache(one * 3 + one // 2)
    for slot in range(3):
        cache.put(slot, 1, columns.from_rows([(1_700_000_000_000, *[None] * 16)] * 1000))
    assert cache.get(0, 1) is not None  # 0 is now the most recently used
    assert cache.get(1, 2) is None  # another counter: not this hour's content any more
    cache.put(3, 1, columns.from_rows([(1_700_000_000_000, *[None] * 16)] * 1000))
    assert len(cache) == 3 and cache.size_bytes <= cache.max_bytes
    assert cache.get(1, 1) is None and cache.get(0, 1) is not None
    assert not hour.arrays["start_ms"].flags.writeable  # shared by readers: read-only


def _hours(store: Store) -> dict[int, tuple[int, int | None]]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(stat_hours.c.slot, stat_hours.c.changes, stat_hours.c.built))
        return {slot: (changes, built) for slot, changes, built in rows}


def _day(store: Store, tz: ZoneInfo, **params: str) -> list[dict[str, Any]]:
    where = query.parse_filters(params, tz)
    return stats.compute(
        store, where, group_by=("hour",), tz=tz, sl_seconds=20, short_abandon_seconds=5
    )


def test_a_correction_moves_a_call_between_hours_exactly(store: Store) -> None:
    utc = ZoneInfo("UTC")
    body = {"callId": "c1", "direction": 0, "startTime": 1_762_000_200_000, "answered": True}
    store.write([_push(body)])
    first = _day(store, utc)
    assert [(g["key"]["hour"], g["calls"], g["answered"]) for g in first] == [
        ("2025-11-01T12:00+00:00", 1, 1)
    ]
    assert all(built == changes for changes, built in _hours(store).values()), "saved"
    moved = body | {"startTime": body["startTime"] + 2 * 3_600_000, "answered": False}
    assert store.write([_push(moved)]) == ["updated"]
    assert all(built != changes for changes, built in _hours(store).values()), "both stale"
    assert [(g["key"]["hour"], g["calls"], g["answered"]) for g in _day(store, utc)] == [
        ("2025-11-01T14:00+00:00", 1, 0)
    ]
    # A late retry of the first version changes nothing, and marks no hour stale.
    before = _hours(store)
    assert store.write([_push(body)]) == ["stale"]
    assert _hours(store) == before


def test_stale_snapshots_are_never_served(store: Store) -> None:
    """A push into an hour whose snapshot is saved shows up in the very next statistic."""
    utc = ZoneInfo("UTC")
    base = 1_762_000_200_000
    store.write(
        [_push({"callId": f"c{i}", "direction": 1, "startTime": base + i}) for i in range(3)]
    )
    assert _day(store, utc)[0]["calls"] == 3
    store.write([_push({"callId": "late", "direction": 1, "startTime": base + 10})])
    assert _day(store, utc)[0]["calls"] == 4
    # Even if a snapshot was saved from a state that is gone (say, a rebuild that raced a
    # write): it is not current, so it is not used.
    with store.writing() as conn:
        conn.execute(update(stat_hours).values(changes=stat_hours.c.changes + 1))
    store.write([_push({"callId": "later", "direction": 1, "startTime": base + 20})])
    assert _day(store, utc)[0]["calls"] == 5


def test_background_refresh_builds_every_stale_hour_but_the_current_one(store: Store) -> None:
    now = int(datetime.now(UTC).timestamp() * 1000)
    bodies = [
        {"callId": f"h{i}", "direction": 1, "startTime": now - i * 3_600_000} for i in range(5)
    ]
    store.write([_push(b) for b in bodies])
    assert rollup.stale_count(store) == 5
    assert rollup.refresh(store) == 4
    assert rollup.stale_count(store) == 1
    current = now // 3_600_000
    assert _hours(store)[current][1] is None


def test_a_refresh_saving_hour_by_hour_gives_the_same_statistics(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh saves what it built whenever a megabyte waits, in read snapshots of 96
    hours, so that its memory is one hour's calls: with both made tiny (every hour saved on
    its own, snapshots of 7 hours), every hour is saved, hour -1 (no start) too, and the
    statistics read from those snapshots alone equal the per-call count."""
    rows = _load(store)
    monkeypatch.setattr(rollup, "_SAVE_BYTES", 1)
    monkeypatch.setattr(rollup, "_CHUNK", 7)
    stale = rollup.stale_count(store)
    assert -1 in _hours(store) and stale > 7
    assert rollup.refresh(store) == stale
    assert rollup.stale_count(store) == 0
    tz = ZoneInfo("America/New_York")
    for params, names in CASES:
        where = query.parse_filters(params, tz)
        got = stats.compute(
            store, where, group_by=names, tz=tz, sl_seconds=20, short_abandon_seconds=5
        )
        _same(got, _oracle(rows, where, names, tz, 20, 5))


def test_pruned_calls_leave_the_statistics(store: Store) -> None:
    utc = ZoneInfo("UTC")
    old = int((datetime.now(UTC) - timedelta(days=400)).timestamp() * 1000)
    store.write(
        [
            _push({"callId": "old", "direction": 1, "startTime": old}),
            _push({"callId": "new", "direction": 1, "startTime": old + 399 * 86_400_000}),
        ]
    )
    everything = query.CallFilter()
    assert (
        stats.compute(store, everything, tz=utc, sl_seconds=20, short_abandon_seconds=5)[0]["calls"]
        == 2
    )
    assert maintenance.prune(store, timedelta(days=365))["calls"] == 1
    assert (
        stats.compute(store, everything, tz=utc, sl_seconds=20, short_abandon_seconds=5)[0]["calls"]
        == 1
    )


# -- the vectorised facts follow the per-call rules exactly ------------------------------------

_ms = st.one_of(st.none(), st.integers(0, 2_000_000_000_000))
_source_rows = st.tuples(
    _ms,  # start
    st.one_of(st.none(), st.integers(0, 2)),
    st.one_of(st.none(), st.booleans()),
    st.one_of(st.none(), st.integers(0, 2)),
    st.one_of(st.none(), st.just("https://rec.example.com/x.mp3")),
    *(st.one_of(st.none(), st.integers(1_700_000_000_000, 1_700_000_100_000)) for _ in range(4)),
    st.one_of(st.none(), st.integers(0, 10_000)),  # queue duration
    st.one_of(st.none(), st.integers(0, 120)),  # ring
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    *(st.one_of(st.none(), st.sampled_from(["a", "b", "客服"])) for _ in range(5)),
)


@given(st.lists(_source_rows, max_size=30))
@hsettings(max_examples=200, deadline=None)
def test_column_facts_equal_call_facts(rows: list[tuple[Any, ...]]) -> None:
    facts = columns.from_bytes(columns.to_bytes(columns.from_rows(rows)))
    a = facts.arrays
    for i, row in enumerate(rows):
        one = callfacts.call_facts(row[2], row[5], row[6], row[7], row[8], row[9], 5)
        assert bool(a["answered"][i]) == one.answered
        assert bool(a["queued"][i]) == one.queued
        for name, value in (
            ("wait_ms", one.wait_seconds),
            ("soa_ms", one.speed_of_answer_seconds),
            ("talk_ms", one.talk_seconds),
        ):
            got = None if a[name][i] == columns.NULL else a[name][i] / 1000
            assert got == value, name
        assert facts.words["agent"][a["agent"][i]] == row[12]


# -- the background refresh's snapshots, made without NumPy, are the readers' bytes -------------

_INT64 = (-(2**63), 2**63 - 1)
#: What a stored value can be, past what the parser accepts: int64's ends and beyond (NumPy
#: refuses those), sums that wrap around, and what a hand-written row holds in SQLite.
_any_int = st.one_of(
    st.none(),
    st.integers(0, 2_000_000_000_000),
    st.integers(*_INT64),
    st.sampled_from([*_INT64, _INT64[0] + 1, 2**62, -(2**62), 2**63, -(2**63) - 1]),
    st.booleans(),
    st.floats(-1e12, 1e12, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), "12", "1.5", "x"]),
)
_stored_rows = st.tuples(
    _any_int,  # start
    _any_int,  # direction
    st.one_of(st.none(), st.booleans(), st.integers(-1, 2)),  # answered
    _any_int,  # hangup_by
    st.one_of(st.none(), st.just("https://rec.example.com/x.mp3")),
    *(_any_int for _ in range(6)),  # queue times, answer, end, queue duration, ring
    st.one_of(st.none(), st.floats(), st.integers(-(2**70), 2**70)),  # price
    *(
        st.one_of(st.none(), st.sampled_from(["a", "b", "客服", ""]), st.integers())
        for _ in range(5)
    ),
)


def _outcome(make: Any) -> Any:
    try:
        return make()
    except Exception as exc:  # the same rows must fail the same way on both paths
        return type(exc)


@given(st.lists(_stored_rows, max_size=12))
@hsettings(max_examples=300, deadline=None)
def test_the_refresh_saves_the_bytes_numpy_would(rows: list[tuple[Any, ...]]) -> None:
    """layout.encode (the server's refresh, no NumPy) makes the snapshot columns.to_bytes of
    columns.from_rows makes, byte for byte, whatever the rows hold: int64 arithmetic wraps the
    same, and what NumPy refuses is refused alike."""
    numpy_made = _outcome(lambda: (len(rows), columns.to_bytes(columns.from_rows(rows))))
    assert _outcome(lambda: layout.encode(rows)) == numpy_made


def test_the_refresh_does_not_load_numpy(tmp_path: Path) -> None:
    """A server's background refresh builds snapshots without NumPy: a server that receives
    pushes and serves no report never loads its 15 MB."""
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from cdrhub.reports import rollup
        from cdrhub.store import Push, open_store
        store = open_store("sqlite:///{tmp_path}/c.db")
        store.upgrade()
        now = int(time.time() * 1000)
        bodies = [
            {{"callId": f"c{{k}}", "startTime": t, "inQueueTime": t, "answerTime": t + 5000,
              "endTime": t + 60000, "answered": True}}
            for k, t in enumerate(now - k * 86_400_000 for k in range(1, 4))
        ]
        store.write([Push(None, json.dumps(b).encode()) for b in bodies])
        assert rollup.refresh(store) == 3
        print("numpy" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
