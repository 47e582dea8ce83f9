"""Exports over HTTP and from the CLI: CSV safe for Excel, JSON Lines, Parquet, all streamed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdrhub import export
from cdrhub.cli import main
from cdrhub.settings import Settings

from .calls import call, ms
from .conftest import Api, Push

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


def test_export_streams_in_chunks() -> None:
    """Each batch of rows leaves as its own chunk, not one string the size of the export."""
    names = list(export.COLUMNS)

    def row(i: int) -> tuple[object, ...]:
        values = {"call_id": f"id{i}", "caller": "=1", "start_time": 1_764_000_000_000 + i}
        return tuple(values.get(c) for c in names)

    batches = ([row(i) for i in range(start, min(start + 500, 1200))] for start in (0, 500, 1000))
    from zoneinfo import ZoneInfo

    seen: list[int] = []
    chunks = list(export.export(batches, "csv", ZoneInfo("Asia/Shanghai"), progress=seen.append))
    assert len(chunks) == 4 and seen == [500, 500, 200]  # header, then three chunks of rows
    assert b"'=1" in chunks[1]
    assert b"2025-11-25T00:00:00.001+08:00" in chunks[1]


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
