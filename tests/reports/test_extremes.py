"""One stored call must not break reading for everyone (issue #12, section 2).

Rows are written straight into the database, past the parser, with the values an older
version accepted (any time up to 9999-12-31T23:59:59.999Z, any 32-bit duration, any double
as a price) and worse ones a migration or a hand-written row can leave. Then every reader
runs over them in several zones, on both databases: the API's list and item, the dashboard's
calls page, live rows, call page and CSV, the exports in every format, the statistics with
every time bucket, the background snapshot refresh, and an import that compares with them.
Each must answer completely, and every time it shows must be the instant stored, in the zone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import literal_column, update

from cdrhub import cdr
from cdrhub.app import create_app
from cdrhub.auth import users
from cdrhub.auth.apikeys import create_key
from cdrhub.pull import imports
from cdrhub.reports import export, rollup
from cdrhub.settings import Settings
from cdrhub.store import Push, Store
from cdrhub.store.schema import calls
from tests.helpers import TOKEN
from tests.helpers.calls import ms

ZONES = ["UTC", "Asia/Shanghai", "America/New_York", "Pacific/Chatham", "Africa/Monrovia"]
PASSWORD = "correct horse battery"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Times a row can hold though no push is accepted with them today.
STORED_TIMES = {
    "first-ms": 1,  # older versions accepted any positive ms: epoch seconds sent as ms
    "monrovia": ms("1971-06-01T12:00:00"),  # Monrovia's offset was -00:44:30 then
    "last-ms": 253_402_300_799_999,  # older versions' maximum: year 10000 east of UTC
    "year-1": -62_135_596_800_000,  # 0001-01-01T00:00Z: year 0 west of UTC
    "year-10000": 253_402_300_800_000,  # PostgreSQL holds its timestamp; datetime cannot
    "huge": 2**62,  # no database timestamp holds it: only the ms column has it
    "negative": -(2**62),
}
#: Number columns at the ends of what their database column holds.
NUMBERS: dict[str, list[Any]] = {
    "call_duration": [-(2**31), 2**31 - 1],
    "ring_duration": [2**31 - 1, -(2**31)],
    "queue_duration": [2**31 - 1, -(2**31)],
    "hangup_code": [-(2**31), 2**31 - 1],
    "direction": [32_767, -32_768],
    "hangup_by": [-32_768, 32_767],
    "total_customer_price": [1.7976931348623157e308, -1.7976931348623157e308, 5e-324, math.inf],
}
TIME_COLUMNS = cdr.TIME_COLUMNS
NORMAL = ms("2026-11-24T10:00:00")
#: The accepted ranges docs/ingest.md states.
FIRST_MS, END_MS = ms("2000-01-01T00:00:00"), ms("2100-01-01T00:00:00")
MAX_DURATION_S, MAX_PRICE = 31 * 86_400, 1_000_000_000


def _moment(value: int) -> datetime | None:
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        return None


def _row(call_id: str, times: dict[str, int | None], **numbers: Any) -> Push:
    """A stored call with these ms in its time columns, written as a push would be."""
    values: dict[str, Any] = dict.fromkeys(cdr.COLUMNS)
    values.update(call_id=call_id, answered=True, agent_name="ann", intent="转人工")
    for column, value in times.items():
        values[f"{column}_ms"] = value
        values[column] = None if value is None else _moment(value)
    values.update(numbers)
    body = json.dumps({"callId": call_id, "stored": "by hand"}).encode()
    return Push(cdr.CallRecord(call_id, values, cdr.content_hash({"callId": call_id})), body)


def _rows() -> list[Push]:
    rows = [_row("plain", dict.fromkeys(TIME_COLUMNS, NORMAL))]
    for name, value in STORED_TIMES.items():
        rows.append(_row(f"all-{name}", dict.fromkeys(TIME_COLUMNS, value)))
        # A normal start, so time filters select it, with every other time extreme.
        later = dict.fromkeys(TIME_COLUMNS, value) | {"start_time": NORMAL}
        rows.append(_row(f"end-{name}", later))
    for i in range(max(len(v) for v in NUMBERS.values())):
        numbers = {column: values[i % len(values)] for column, values in NUMBERS.items()}
        rows.append(_row(f"numbers-{i}", dict.fromkeys(TIME_COLUMNS, NORMAL), **numbers))
    return rows


def _store_extremes(store: Store) -> list[str]:
    """Write the rows; on PostgreSQL also give year 10000 its timestamp, as a migration may."""
    rows = _rows()
    store.write(rows)
    if store.kind == "postgresql":
        epoch = literal_column("TIMESTAMPTZ 'epoch'")
        one_ms = literal_column("INTERVAL '1 millisecond'")
        with store.writing() as conn:
            for column in TIME_COLUMNS:
                exact = calls.c[f"{column}_ms"]
                conn.execute(
                    update(calls)
                    .where(calls.c[column].is_(None), exact.between(-(2 * 10**14), 9 * 10**15))
                    .values({column: epoch + exact * one_ms})
                )
    return [r.record.call_id for r in rows]


def _iso(value: int | None, tz: ZoneInfo) -> str | None:
    """What a time must read as: the instant in the zone, or null where no date holds it."""
    if value is None:
        return None
    # Year 10000 UTC is still 9999-12-31 in New York: reached from a day before or after,
    # where ``datetime`` holds the UTC instant (no zone changes its offset at those ends).
    for shift in (timedelta(0), timedelta(days=1), timedelta(days=-1)):
        try:
            moment = (_EPOCH + (timedelta(milliseconds=value) - shift)).astimezone(tz) + shift
        except OverflowError:
            continue
        return moment.isoformat(timespec="milliseconds")
    return None


@pytest.fixture
def extremes(store: Store) -> list[str]:
    """The extreme rows, stored; their callIds."""
    return _store_extremes(store)


@pytest.fixture(params=ZONES)
def zoned(request: pytest.FixtureRequest, settings: Settings, store: Store) -> Iterator[Any]:
    """The app with ``CDRHUB_TIMEZONE`` set to the zone, a signed-in dashboard and a key."""
    local = settings.model_copy(update={"timezone": request.param})
    key = create_key(store, f"extremes-{request.param}")[1]
    with TestClient(create_app(local), raise_server_exceptions=False) as client:
        users.create(store, "ann", "viewer", PASSWORD)
        page = client.get("/login").text
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token
        client.post("/login", data={"name": "ann", "password": PASSWORD, "csrf": token[1]})
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, ZoneInfo(request.param)


def _all_items(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """Every call of /api/calls, page by page (small pages: the cursor passes every row)."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        answer = client.get("/api/calls", params={"limit": 3, **params, "cursor": cursor})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def _check_times(item: dict[str, Any], tz: ZoneInfo) -> None:
    for column in TIME_COLUMNS:
        assert item[column] == _iso(item[f"{column}_ms"], tz), (item["call_id"], column)


def test_every_reader_survives_extreme_stored_rows(
    zoned: Any, store: Store, extremes: list[str]
) -> None:
    """List, item, exports (CSV, JSON Lines, Parquet), statistics, snapshots and the dashboard
    answer in full over rows no push is accepted with today, each time shown as stored."""
    client, tz = zoned
    for order in ("desc", "asc"):
        items = _all_items(client, order=order)
        assert sorted(i["call_id"] for i in items) == sorted(extremes)
    for item in items:
        _check_times(item, tz)
    by_id = {i["call_id"]: i for i in items}

    for call_id in extremes:
        one = client.get(f"/api/calls/{call_id}")
        assert one.status_code == 200, (call_id, one.text)
        assert {k: v for k, v in one.json().items() if k in by_id[call_id]} == by_id[call_id]
        page = client.get(f"/calls/{call_id}")
        assert page.status_code == 200 and call_id in page.text, (call_id, page.text[-500:])

    jsonl = client.get("/api/export", params={"format": "jsonl"})
    assert jsonl.status_code == 200
    lines = [json.loads(line) for line in jsonl.text.splitlines()]
    assert {line["call_id"]: line for line in lines} == by_id

    for path in ("/api/export", "/calls/export"):
        answer = client.get(path, params={"format": "csv"} if path.startswith("/api") else {})
        assert answer.status_code == 200, answer.text
        rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"), newline="")))
        assert rows[0] == list(export.COLUMNS)
        cells = {row[0]: dict(zip(export.COLUMNS, row, strict=True)) for row in rows[1:]}
        assert sorted(cells) == sorted(extremes), path
        for call_id, item in by_id.items():
            for column in TIME_COLUMNS:
                assert cells[call_id][column] == (item[column] or ""), (call_id, column)
                assert cells[call_id][f"{column}_ms"] == str(item[f"{column}_ms"] or "")

    # Only the calls that started on the normal day: the extreme rows are outside the range.
    day = {"from": "2026-11-24T00:00:00Z", "to": "2026-11-25T00:00:00Z"}
    ranged = client.get("/api/export", params={"format": "csv", **day})
    assert ranged.status_code == 200
    expected = sorted(c for c in extremes if by_id[c]["start_time_ms"] == NORMAL)
    got = [row[0] for row in csv.reader(io.StringIO(ranged.content.decode("utf-8-sig")))]
    assert sorted(got[1:]) == expected

    parquet = client.get("/api/export", params={"format": "parquet"})
    assert parquet.status_code == 200
    table = pq.read_table(io.BytesIO(parquet.content))
    assert sorted(table.column("call_id").to_pylist()) == sorted(extremes)
    ids, starts = table.column("call_id").to_pylist(), table.column("start_time_ms").to_pylist()
    start_ms = dict(zip(ids, starts, strict=True))
    assert start_ms == {c: i["start_time_ms"] for c, i in by_id.items()}

    for group_by in ("none", "hour", "day", "week", "month", "direction,hangup_by"):
        stats = client.get("/api/stats", params={"group_by": group_by})
        assert stats.status_code == 200, (group_by, stats.text)
        assert sum(g["calls"] for g in stats.json()["groups"]) == len(extremes), group_by
    assert rollup.refresh(store) >= 0  # the background refresh's work, over every hour
    assert rollup.stale_count(store) <= 1  # at most the current hour, left to readers
    again = client.get("/api/stats")
    assert again.status_code == 200 and again.json()["groups"][0]["calls"] == len(extremes)

    listing = client.get("/calls")
    assert listing.status_code == 200
    assert sorted(re.findall(r'data-id="([^"]+)"', listing.text)) == sorted(extremes)
    live = client.get("/calls/rows", params={"after": 0})
    assert live.status_code == 200
    assert client.get("/").status_code == 200


def test_an_import_compares_with_extreme_stored_rows(store: Store, extremes: list[str]) -> None:
    """An import (and a reconcile, which stores through it) reads the stored rows it compares
    with: a valid record for each extreme call updates it, none is refused or lost."""
    records = [{"callId": c, "startTime": NORMAL, "answered": True} for c in extremes]
    tally = imports.store_records(store, records, origin="test")
    assert (tally.updated, tally.quarantined) == (len(extremes), 0)
    row = store.get_call("all-last-ms")
    assert row is not None and row["start_time_ms"] == NORMAL


@pytest.mark.parametrize(
    "value",
    [FIRST_MS - 1, END_MS, 253_402_300_799_999, 1_691_372_191, -1],
)
def test_times_outside_the_range_are_refused_by_every_way_in(
    client: TestClient, store: Store, value: int
) -> None:
    """A push, a file import and a reconcile refuse a time outside the accepted range with a
    422 naming the field, and the quarantine keeps the body; the calls table stays empty."""
    for field in (f for f in cdr.FIELDS if f.column in TIME_COLUMNS):
        body = {"callId": f"x-{field.name}", "startTime": NORMAL, field.name: value}
        answer = client.post("/cc/callback", json=body, headers={"token": TOKEN})
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["fields"]
        assert problem["field"] == field.name and problem["value"] == value
        assert "2000-01-01" in problem["expected"] and "2099-12-31" in problem["expected"]
        tally = imports.store_records(store, [body | {"callId": f"i-{field.name}"}], origin="t")
        assert tally.quarantined == 1
    assert store.count_calls() == 0
    kept = {bytes(e["body"]) for e in store.quarantined(limit=100)}
    assert len(kept) == 2 * len(TIME_COLUMNS)


@pytest.mark.parametrize("zone", ZONES)
def test_the_edges_of_the_range_are_readable_everywhere(
    settings: Settings, store: Store, zone: str
) -> None:
    """The first and last accepted times, pushed through the parser, read back exactly."""
    key = create_key(store, "edges")[1]
    local = settings.model_copy(update={"timezone": zone})
    tz = ZoneInfo(zone)
    with TestClient(create_app(local)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        for name, value in (("min", FIRST_MS), ("max", END_MS - 1)):
            times = {f.name: value for f in cdr.FIELDS if f.column in TIME_COLUMNS}
            body = {"callId": name, **times}
            body.update(callDuration=MAX_DURATION_S, totalCustomerPrice=-MAX_PRICE)
            pushed = client.post("/cc/callback", json=body, headers={"token": TOKEN})
            assert pushed.status_code == 200, pushed.text
        items = _all_items(client)
        assert len(items) == 2
        for item in items:
            _check_times(item, tz)
        for group_by in ("hour", "day", "week", "month"):
            answer = client.get("/api/stats", params={"group_by": group_by})
            assert sum(g["calls"] for g in answer.json()["groups"]) == 2
        raw = client.get("/api/export").content.decode("utf-8-sig")
        assert len(raw.splitlines()) == 3


def test_a_reconcile_quarantines_a_pulled_time_outside_the_range(store: Store) -> None:
    """NXCC's query API is outside data too: a record with a year-9999 endTime is refused
    with the same 422 as a push and quarantined, not stored."""
    from cdrhub.pull import backfill, nxcc
    from tests.helpers.fake_nxcc import KEY, SECRET, FakeNxcc, running

    hour_s = 1_764_000_000 // 3600 * 3600
    with running(FakeNxcc()) as fake:
        fake.records = [
            {"callId": "r-1", "startTime": hour_s * 1000, "endTime": 253_402_300_799_999},
            {"callId": "r-2", "startTime": hour_s * 1000 + 1, "endTime": hour_s * 1000 + 60_000},
        ]
        client = nxcc.Client(fake.url, KEY, SECRET, rate=1000.0, retries=2, backoff=0.01)
        with client:
            hours = backfill.reconcile(store, client, hour_s, hour_s + 3600)
    assert sum(h.stored.quarantined for h in hours) == 1
    assert [r["call_id"] for r in _all_rows(store)] == ["r-2"]
    [entry] = store.quarantined()
    detail = json.loads(entry["detail"])
    assert (entry["status"], detail["fields"][0]["field"]) == (422, "endTime")
    assert json.loads(entry["body"])["callId"] == "r-1"


def _all_rows(store: Store) -> list[dict[str, Any]]:
    from sqlalchemy import select

    with store.read_engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(calls.c.call_id)).mappings()]
