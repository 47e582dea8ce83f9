"""Exports over HTTP and from the CLI: CSV safe for Excel, JSON Lines, Parquet, all streamed."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from cdrhub import cdr
from cdrhub.cli import main
from cdrhub.reports import csvsql, export
from cdrhub.reports.query import CallFilter
from cdrhub.settings import Settings
from cdrhub.store import Push as StorePush
from cdrhub.store import Store
from cdrhub.store.schema import calls
from tests.helpers import Api, Push
from tests.helpers.calls import call, ms

EVIL = [
    '=HYPERLINK("http://evil.example","click")',
    "+8613800000000",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
]


@pytest.fixture
def loaded(push: Push) -> None:
    """A Chinese intent, formula-like text in every free-text column, and a plain call."""
    push(
        call(
            "x1",
            "2026-11-24T01:00:00",
            caller=EVIL[0],
            callee=EVIL[1],
            agentName=EVIL[2],
            intent="转人工-成功",
            other=EVIL[3],
            hangupReason=EVIL[4],
            totalCustomerPrice=-1.5,
            answered=True,
            answer=2,
            end=10,
        )
    )
    push(call("x2", "2026-11-24T02:00:00", caller="85235757581", direction=2))


def test_csv_has_a_bom_neutralises_formulas_and_keeps_chinese(api: Api, loaded: None) -> None:
    """Excel sees UTF-8 (BOM), text not formulas ('-prefixed), zoned ISO times and raw ms."""
    response = api("/api/export", format="csv", tz="Asia/Shanghai")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    raw = response.content
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [r["call_id"] for r in rows] == ["x1", "x2"]
    first = rows[0]
    assert first["caller"] == "'" + EVIL[0]
    assert first["callee"] == "'" + EVIL[1]
    assert first["agent_name"] == "'" + EVIL[2]
    assert first["other"] == "'" + EVIL[3]
    assert first["hangup_reason"] == "'" + EVIL[4]
    assert first["intent"] == "转人工-成功"
    assert first["total_customer_price"] == "-1.5"  # a number, not text: left alone
    assert first["start_time"] == "2026-11-24T09:00:00.000+08:00"
    assert first["start_time_ms"] == str(ms("2026-11-24T01:00:00"))
    assert first["answered"] == "true" and rows[1]["answered"] == ""
    assert list(rows[0]) == list(export.COLUMNS)


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Asia/Kathmandu"])
def test_jsonl_rows_equal_the_api_items(api: Api, loaded: None, zone: str) -> None:
    """Every column of an export, its times included, is what /api/calls shows for the call."""
    exported = [
        json.loads(line) for line in api("/api/export", format="jsonl", tz=zone).text.splitlines()
    ]
    listed = api("/api/calls", order="asc", tz=zone).json()["items"]
    assert exported == listed


def test_csv_without_bom(api: Api, loaded: None) -> None:
    """bom=false gives plain UTF-8 for tools that dislike the BOM."""
    assert api("/api/export", format="csv", bom="false").content.startswith(b"call_id,")


def test_jsonl_escapes_nothing(api: Api, loaded: None) -> None:
    """One JSON object per line, text exactly as stored (no formula prefix, no \\u escapes)."""
    response = api("/api/export", format="jsonl", direction="AICC")
    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == ["x2"]
    everything = api("/api/export", format="jsonl").content.decode()
    assert "转人工-成功" in everything
    assert json.loads(everything.splitlines()[0])["caller"] == EVIL[0]


def test_parquet_round_trips(api: Api, loaded: None) -> None:
    """Parquet has typed columns: zoned timestamps, integers, the Chinese text."""
    pq = pytest.importorskip("pyarrow.parquet")
    response = api("/api/export", format="parquet", tz="Asia/Shanghai")
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert table.num_rows == 2
    assert str(table.schema.field("start_time").type) == "timestamp[ms, tz=Asia/Shanghai]"
    rows = table.to_pylist()
    assert rows[0]["intent"] == "转人工-成功" and rows[0]["start_time_ms"] == ms(
        "2026-11-24T01:00:00"
    )


def test_bad_format_is_422(api: Api) -> None:
    """An unknown format names the parameter."""
    response = api("/api/export", format="xlsx")
    assert response.status_code == 422 and response.json()["fields"][0]["field"] == "format"


HOSTILE = [
    'say "hi", then go',
    "line one\nline two",
    "cr\r\nlf",
    '=cmd|" /C calc"!A0',
    "+1",
    "-1",
    "@x",
    "\tfoo",
    "\rbar",
    "中文，逗号,comma",
    "🙂 emoji",
    "back\\slash",
    "it's",
    " leading space",
    '""',
    ",",
]
TEXT_FIELDS = (
    "agentName", "agentNickName", "caller", "callee", "dtmfKeys", "hangupReason", "callStatus",
    "orderId", "other", "intent",
)  # fmt: skip


def _hostile_calls() -> list[dict[str, object]]:
    """Calls whose every free-text field is hostile, and whose times sit on DST changes, far
    in the future, near 1970 or are missing; prices that print differently in every language."""
    bodies: list[dict[str, object]] = []
    prices = [0.30000000000000004, 1e-07, -1.5, 1.0, 0.035, None]
    starts = ["2026-03-08T06:59:59.999", "2026-03-08T07:00:00", "2026-11-01T05:30:00", None]
    for i, text in enumerate(HOSTILE):
        body = call(
            f"h{i:02d}" if i else '"h,00"',
            starts[i % len(starts)],
            direction=i % 3,
            answered=bool(i % 2),
            totalCustomerPrice=prices[i % len(prices)],
            **{field: HOSTILE[(i + j) % len(HOSTILE)] for j, field in enumerate(TEXT_FIELDS)},
        )
        body["agentName"] = text
        if i % 4 == 1:
            body["endTime"] = cdr.END_TIME_MS - 1  # 2099, the last accepted: past the SQL window
        if i % 4 == 2:
            body["ringTime"] = cdr.MIN_TIME_MS + i  # 2000, the first accepted: before it
        bodies.append(body)
    return bodies


def _reference(item: dict[str, object]) -> list[str]:
    """An API item as the export's rules write it (cdrhub.csvsql's docstring), cell by cell."""
    cells = []
    for name in export.COLUMNS:
        value = item[name]
        if value is None:
            cells.append("")
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif isinstance(value, float):
            cells.append(format(value, ".15g"))
        elif isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
            cells.append("'" + value if not name.endswith("_time") else value)
        else:
            cells.append(str(value))
    return cells


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "UTC"])
def test_csv_cells_follow_the_rules_on_hostile_data(api: Api, push: Push, zone: str) -> None:
    """Every cell of the database-formatted CSV is what the rules make of the API's value:
    quoting, formula prefixes, times in the zone (DST changes, 2099, 2000), numbers, NULLs."""
    for body in _hostile_calls():
        assert push(body).status_code == 200
    raw = api("/api/export", format="csv", tz=zone).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(raw, newline="")))
    assert rows[0] == list(export.COLUMNS)
    items = api("/api/calls", order="asc", tz=zone, limit=100).json()["items"]
    assert len(rows) - 1 == len(items) == len(HOSTILE)
    by_id = {row[0].removeprefix("'"): row for row in rows[1:]}
    for item in items:
        assert by_id[item["call_id"]] == _reference(item), item["call_id"]
    assert raw.count('"\'=cmd|"" /C calc""!A0"') == len(TEXT_FIELDS)


def test_export_streams_in_chunks(store: Store, settings: Settings) -> None:
    """Lines leave a batch at a time, not as one string the size of the export."""
    base = ms("2025-11-25T00:00:00")
    bodies = [{"callId": f"id{i}", "caller": "=1", "startTime": base + i} for i in range(1200)]
    raws = [json.dumps(b).encode() for b in bodies]
    store.write([StorePush(cdr.parse(r), r) for r in raws])
    tz = ZoneInfo("Asia/Shanghai")
    chunks = list(csvsql.lines(store, CallFilter(), tz, batch=500))
    assert [rows for _, rows in chunks] == [500, 500, 200]
    assert b"'=1" in chunks[0][0] and b"2025-11-25T08:00:00.001+08:00" in chunks[0][0]
    seen: list[int] = []
    streamed = list(export.stream(store, CallFilter(), "csv", tz, progress=seen.append))
    assert sum(seen) == 1200 and len(b"".join(streamed).splitlines()) == 1201
    # A reader that goes away mid-export (a closed download) frees the connection cleanly.
    abandoned = csvsql.lines(store, CallFilter(), tz, batch=100)
    next(abandoned)
    abandoned.close()
    assert sum(rows for _, rows in csvsql.lines(store, CallFilter(), tz)) == 1200


def test_cli_export_to_files(settings: Settings, loaded: None, tmp_path: Path) -> None:
    """`cdrhub export --output` picks the format from the extension and applies the filters."""
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    runner = CliRunner()
    target = tmp_path / "calls.csv"
    result = runner.invoke(
        main, ["export", "--output", str(target)], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert target.read_bytes().startswith(b"\xef\xbb\xbfcall_id,")
    assert len(target.read_text(encoding="utf-8-sig").splitlines()) == 3
    lines = tmp_path / "aicc.jsonl"
    result = runner.invoke(
        main, ["export", "-o", str(lines), "--direction", "AICC"], env=env, catch_exceptions=False
    )
    assert result.exit_code == 0 and "1 calls written" in result.output
    assert json.loads(lines.read_text())["call_id"] == "x2"
    bad = runner.invoke(main, ["export", "-o", str(tmp_path / "x.csv"), "--from", "soon"], env=env)
    assert bad.exit_code == 1 and "--from" in bad.output


def test_csv_export_applies_every_kind_of_filter(api: Api, loaded: None) -> None:
    """A prefix (LIKE), a time range and an exact filter reach the database's own CSV query."""
    for params, expected in (
        ({"caller_prefix": "852357"}, ["x2"]),
        ({"from": "2026-11-24T01:30:00+00:00"}, ["x2"]),
        ({"to": "2026-11-24T01:30:00+00:00"}, ["x1"]),
        ({"direction": "AICC"}, ["x2"]),
        ({"intent": "转人工-成功"}, ["x1"]),
    ):
        raw = api("/api/export", format="csv", **params).content.decode("utf-8-sig")
        assert [row["call_id"] for row in csv.DictReader(io.StringIO(raw))] == expected, params


@pytest.mark.parametrize("micro", [999_500, 999_600, 999_999])
def test_csv_truncates_bookkeeping_times_to_the_ms(
    api: Api, push: Push, store: Store, micro: int
) -> None:
    """A received_at of 23:59:59.9995 or later is 23:59:59.999 in the CSV on both databases,
    as the API shows it (SQLite's strftime read it to the nearest ms: the next day, .999)."""
    push(call("r1", "2026-11-24T01:00:00"))
    moment = datetime(2026, 11, 24, 15, 59, 59, micro, tzinfo=UTC)  # 23:59:59 in Shanghai
    with store.write_engine.begin() as conn:
        conn.execute(
            calls.update().values(received_at=moment, updated_at=moment, last_received_at=moment)
        )
    raw = api("/api/export", format="csv", tz="Asia/Shanghai").content.decode("utf-8-sig")
    (row,) = csv.DictReader(io.StringIO(raw, newline=""))
    (item,) = api("/api/calls", tz="Asia/Shanghai").json()["items"]
    for name in ("received_at", "updated_at", "last_received_at"):
        assert row[name] == "2026-11-24T23:59:59.999+08:00" == item[name], name
