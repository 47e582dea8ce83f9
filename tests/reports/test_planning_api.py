"""The planning reports over HTTP and the command line: the same figures as the functions
(checked by hand in test_planning.py), JSON errors that name the parameter, CSV and XLSX
downloads with formulas neutralised and Chinese text intact."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import pytest
from click.testing import CliRunner

from cdrhub.cli import main
from cdrhub.settings import Settings
from tests.helpers import Api, Push
from tests.helpers.calls import call
from tests.reports.test_planning import DATA

NY = "America/New_York"
EVIL = '=HYPERLINK("http://x.example/","点我")'


@pytest.fixture
def loaded(push: Push) -> None:
    for body in [*DATA, call("U", "2026-11-01T15:00:00", answered=True, direction=0,
                             in_queue=0, answer=4, end=64, agentName=EVIL)]:  # fmt: skip
        assert push(body).status_code == 200


def test_interval_report_over_http_has_the_dst_day_and_the_hand_computed_figures(
    api: Api, loaded: None
) -> None:
    body = api("/api/reports/intervals", from_="2026-11-01", tz=NY).json()
    assert body["minutes"] == 30
    assert len(body["intervals"]) == 50
    est = next(r for r in body["intervals"] if r["start"] == "2026-11-01T01:00-05:00")
    assert (est["offered"], est["abandoned"], est["short_abandoned"]) == (3, 2, 1)
    assert (est["service_level"], est["asa_seconds"], est["longest_wait_seconds"]) == (0, 30, 40)
    quarter = api("/api/reports/intervals", from_="2026-11-01", tz=NY, interval="15").json()
    assert len(quarter["intervals"]) == 100


def test_agent_and_staffing_reports_over_http(api: Api, loaded: None) -> None:
    agents = api(
        "/api/reports/agents", from_="2026-11-01", to="2026-11-02", tz=NY, sort="agent"
    ).json()
    names = [r["agent"] for r in agents["agents"]]
    assert names == sorted(names)
    li = next(r for r in agents["agents"] if r["agent"] == "李雷")
    assert (li["handled"], li["missed"], li["answered_share"]) == (2, 1, round(1 / 3, 4))
    plan = api(
        "/api/reports/staffing", from_="2026-11-01", tz=NY, sl_target="0.9", sl_seconds="20"
    ).json()
    assert plan["sl_target"] == 0.9
    est = next(r for r in plan["intervals"] if r["start"] == "2026-11-01T01:00-05:00")
    assert est["agents_needed"] == 2 and est["expected_service_level"] == 0.9865


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("intervals", "interval", "20"),
        ("staffing", "sl_target", "1.5"),
        ("staffing", "sl_seconds", "-1"),
        ("agents", "sort", "speed"),
        ("agents", "format", "pdf"),
        ("intervals", "from", "yesterday"),
        ("agents", "agentName", "ann"),
    ],
)
def test_bad_parameters_are_json_422s_naming_them(
    api: Api, path: str, param: str, value: str
) -> None:
    response = api(f"/api/reports/{path}", **{param: value})
    assert response.status_code == 422
    assert response.json()["fields"][0]["field"] == param


def test_reports_need_an_api_key(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/reports/agents").status_code == 401


def test_csv_download_opens_in_excel_with_formulas_neutralised(api: Api, loaded: None) -> None:
    response = api("/api/reports/agents", from_="2026-11-01", to="2026-11-02", tz=NY,
                   format="csv")  # fmt: skip
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="agents-' in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["agent", "handled", "answered", "missed"]
    agents = {r[0] for r in rows[1:]}
    assert "李雷" in agents and "'" + EVIL in agents


def test_xlsx_download_is_formatted_and_holds_no_formula(api: Api, loaded: None) -> None:
    response = api("/api/reports/agents", from_="2026-11-01", to="2026-11-02", tz=NY,
                   format="xlsx")  # fmt: skip
    assert response.headers["content-type"].startswith("application/vnd.openxml")
    book = zipfile.ZipFile(io.BytesIO(response.content))
    sheet = book.read("xl/worksheets/sheet1.xml").decode()
    workbook = book.read("xl/workbook.xml").decode()
    strings = book.read("xl/sharedStrings.xml").decode()
    styles = book.read("xl/styles.xml").decode()
    assert 'name="Agents"' in workbook
    assert 'state="frozen"' in sheet and 'ySplit="1"' in sheet  # the header stays in view
    assert "<f>" not in sheet  # the agent name that looks like a formula is a string cell
    assert "李雷" in strings and "HYPERLINK" in strings
    assert 'formatCode="0.0%"' in styles and 'formatCode="#,##0.0"' in styles
    assert "<autoFilter" in sheet
    assert re.search(r'<c r="A1"[^>]*t="s"', sheet)  # the header row is text


def test_cli_reports_equal_the_api(api: Api, loaded: None, settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TIMEZONE": NY}
    runner = CliRunner()
    for kind in ("intervals", "agents", "staffing"):
        result = runner.invoke(
            main, ["report", kind, "--from", "2026-11-01", "--format", "json"], env=env
        )
        assert result.exit_code == 0, result.output
        assert (
            json.loads(result.output)
            == api(f"/api/reports/{kind}", from_="2026-11-01", tz=NY).json()
        )
    target = tmp_path / "staffing.xlsx"
    result = runner.invoke(main, ["report", "staffing", "--from", "2026-11-01", "-o",
                                  str(target)], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert zipfile.ZipFile(target).read("xl/workbook.xml").decode().count('name="Staffing"') == 1
    table = runner.invoke(main, ["report", "intervals", "--from", "2026-11-01"], env=env)
    assert "2026-11-01T01:00-05:00" in table.output and "2026-11-01T01:00-04:00" in table.output
    bad = runner.invoke(main, ["report", "staffing", "--sl-target", "abc"], env=env)
    assert bad.exit_code != 0 and "--sl-target 'abc'" in bad.output
    no_file = runner.invoke(main, ["report", "agents", "--format", "xlsx"], env=env)
    assert no_file.exit_code != 0 and "--output" in no_file.output
