"""The CSV export, through the API and the CLI, byte for byte against an independent one
(tests/helpers/csvref.py: SQLAlchemy rows, Python cells, the csv module), on tricky data,
in one slice and in many (the sliced export on several connections must not change a byte).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from cdrhub import cdr
from cdrhub.reports import csvsql, export
from cdrhub.reports.query import CallFilter
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import calls
from tests.helpers import Api, Push
from tests.helpers.calls import call, ms
from tests.helpers.cli import db_env, run
from tests.helpers.csvref import reference_csv

TEXTS = [
    "转人工-成功",
    'say "hi", then go',
    "a,b,c",
    "line one\nline two",
    "cr\r\nlf",
    '=HYPERLINK("http://evil.example","x")',
    "+8613800000000",
    "-2+3",
    "@SUM(A1:A2)",
    "\tfoo",
    "\rbar",
    "中文，逗号,comma",
    "🙂",
    '""',
    "",
    " lead",
]
FIELDS = ("agentName", "agentNickName", "caller", "callee", "dtmfKeys", "hangupReason",
          "callStatus", "orderId", "other", "intent", "taskId")  # fmt: skip
#: Start times next to second boundaries and around New York's DST changes (UTC).
STARTS = [
    "2026-03-08T06:59:59.999",  # 01:59:59.999 EST, the last ms before the spring change
    "2026-03-08T07:00:00.000",  # 03:00 EDT
    "2026-11-01T05:59:59.999",  # 01:59:59.999 EDT, the first 1:59 of the night
    "2026-11-01T06:00:00.000",  # 01:00 EST, the hour again
    "2026-11-24T15:59:59.999",  # 23:59:59.999 in Shanghai
    "2026-11-24T16:00:00.000",  # midnight in Shanghai
    "2026-11-24T16:00:00.001",
]


def _bodies() -> list[dict[str, object]]:
    bodies: list[dict[str, object]] = []
    for i in range(40):
        start = STARTS[i % len(STARTS)] if i % 9 else None  # some calls have no start time
        body = call(
            f"c{i:02d}",
            start,
            direction=i % 3,
            answered=[True, False, None][i % 3],
            totalCustomerPrice=[0.30000000000000004, 1e-07, -1.5, 12.0, None][i % 5],
            ringDuration=None if i % 4 == 0 else i,
            **{f: TEXTS[(i + j) % len(TEXTS)] for j, f in enumerate(FIELDS)},
        )
        if start is not None:
            body["answerTime"] = ms(start) + 999 + i  # crosses a second boundary
            body["endTime"] = ms(start) + 60_000
        if i % 6 == 1:
            body["endTime"] = cdr.END_TIME_MS - 1  # 2099: outside the SQL window, Python's
        if i % 6 == 2:
            body["ringTime"] = cdr.MIN_TIME_MS + i  # 2000: before it
        for j, f in enumerate(FIELDS):
            if (i + j) % 7 == 0:
                body[f] = None  # NULLs everywhere
        bodies.append(body)
    return bodies


@pytest.fixture
def tricky(push: Push, store: Store) -> None:
    """40 calls (ties on start time, inserted in callId order), bookkeeping times near second
    boundaries, among them 23:59:59.9996 (which SQLite once rounded into the next day)."""
    for body in _bodies():
        assert push(body).status_code == 200
    with store.write_engine.begin() as conn:
        for i, micro in enumerate([999_600, 999_999, 0, 500, 999_000]):
            moment = datetime(2026, 11, 24, 15, 59, 59, micro, tzinfo=UTC)
            conn.execute(
                calls.update()
                .where(calls.c.call_id.in_([f"c{k:02d}" for k in range(i, 40, 5)]))
                .values(received_at=moment, last_received_at=moment)
            )


@pytest.fixture(params=["one slice", "slices of 3"])
def slicing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The export in one query, and cut into slices of 3 calls on 2 connections."""
    if request.param == "slices of 3":
        monkeypatch.setattr(csvsql, "SLICE_ROWS", 3)
    return str(request.param)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_api_export_equals_the_reference(
    api: Api, store: Store, tricky: None, slicing: str, zone: str
) -> None:
    """GET /api/export is, byte for byte, what the csv module writes from the rows."""
    expected = reference_csv(store, ZoneInfo(zone))
    response = api("/api/export", format="csv", tz=zone)
    assert response.status_code == 200
    assert response.content == expected
    plain = api("/api/export", format="csv", tz=zone, bom="false").content
    assert plain == reference_csv(store, ZoneInfo(zone), bom=False)


def test_cli_export_equals_the_reference(
    settings: Settings, store: Store, tricky: None, slicing: str, tmp_path: Path
) -> None:
    """`cdrhub export -o calls.csv` writes the same bytes as the reference."""
    target = tmp_path / "calls.csv"
    result = run("export", "-o", str(target), "--tz", "America/New_York", env=db_env(settings))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == reference_csv(store, ZoneInfo("America/New_York"))


def test_the_reference_catches_a_broken_export(store: Store, tricky: None) -> None:
    """The comparison is not vacuous: one changed byte, one line moved, or another zone
    differ from the reference."""
    tz = ZoneInfo("Asia/Shanghai")
    exported = b"".join(export.stream(store, CallFilter(), "csv", tz))
    expected = reference_csv(store, tz)
    assert exported == expected
    lines = exported.split(b"\n")
    assert b"\n".join([lines[0], lines[2], lines[1], *lines[3:]]) != expected
    assert exported.replace(b"'=", b"=", 1) != expected
    assert reference_csv(store, ZoneInfo("America/New_York")) != expected


def test_sliced_export_reads_one_snapshot(
    store: Store, push: Push, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls written while a sliced export runs are not in it (nor is a correction): every
    slice reads the database as it was when the export began."""
    monkeypatch.setattr(csvsql, "SLICE_ROWS", 4)
    for i in range(40):
        assert push(call(f"s{i:02d}", f"2026-11-20T00:{i:02d}:00")).status_code == 200
    tz = ZoneInfo("UTC")
    before = reference_csv(store, tz)
    chunks = csvsql.lines(store, CallFilter(), tz, batch=2)
    first, _ = next(chunks)  # the slices have started: the snapshot is fixed
    assert push(call("late", "2026-11-20T00:59:00")).status_code == 200  # the last slice
    moved = call("s01", "2026-11-20T00:58:00", caller="corrected")  # a new version
    assert push(moved).status_code == 200
    exported = b"".join([first, *(chunk for chunk, _ in chunks)])
    assert exported == before.split(b"\n", 1)[1]  # without the header
    assert b"late" not in exported and b"corrected" not in exported


def test_abandoned_sliced_export_frees_everything(
    store: Store, push: Push, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download closed mid-export stops its threads and child processes and gives the
    connections back: the next export is whole, and the first one is not going on."""
    monkeypatch.setattr(csvsql, "SLICE_ROWS", 3)
    for i in range(30):
        assert push(call(f"a{i:02d}", f"2026-11-20T01:{i:02d}:00")).status_code == 200
    tz = ZoneInfo("UTC")
    for _ in range(3):
        abandoned = csvsql.lines(store, CallFilter(), tz, batch=1)
        next(abandoned)
        abandoned.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("cdrhub-csv-")]
    whole = b"".join(chunk for chunk, _ in csvsql.lines(store, CallFilter(), tz))
    assert whole == reference_csv(store, tz).split(b"\n", 1)[1]
