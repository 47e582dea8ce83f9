"""The Reports pages on the server side: a viewer opens them, the figures in the table are
the API's, an agent's row opens that agent's calls, stored text stays escaped, downloads
are the API's files."""

from __future__ import annotations

import io
import re
import zipfile
from html import unescape
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient

from cdrhub.auth import users
from cdrhub.store import Store
from tests.helpers import Api, Push
from tests.helpers.calls import call
from tests.reports.test_planning import DATA

PASSWORD = "correct horse battery"
XSS = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


@pytest.fixture
def viewer(client: TestClient, store: Store, push: Push) -> TestClient:
    """Calls loaded (one agent named like an attack), and the client signed in as a viewer."""
    for body in [*DATA, call("V", "2026-11-01T16:00:00", in_queue=0, answer=8, end=98,
                             answered=True, direction=0, agentName=XSS)]:  # fmt: skip
        assert push(body).status_code == 200
    users.create(store, "vic", "viewer", PASSWORD)
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]  # type: ignore[index]
    answer = client.post("/login", data={"name": "vic", "password": PASSWORD, "csrf": token,
                                         "next": "/"}, follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303
    return client


def _cells(html: str, column: str) -> list[str]:
    return [unescape(v) for v in re.findall(rf'data-col="{column}" data-value="([^"]*)"', html)]


@pytest.mark.parametrize("kind", ["intervals", "agents", "staffing"])
def test_a_viewer_sees_the_apis_figures(viewer: TestClient, api: Api, kind: str) -> None:
    page = viewer.get(f"/reports/{kind}", params={"from": "2026-11-01", "to": "2026-11-01"})
    assert page.status_code == 200
    html = page.text
    assert 'id="nav-reports"' in html
    source = unescape(re.search(r'data-api="([^"]+)"', html)[1])  # type: ignore[index]
    path, _, query = source.partition("?")
    body = api(path, **dict(parse_qsl(query))).json()
    rows = body["agents"] if kind == "agents" else body["intervals"]
    column = {"intervals": "offered", "agents": "handled", "staffing": "agents_needed"}[kind]
    assert _cells(html, column) == ["" if r[column] is None else str(r[column]) for r in rows]
    assert len(rows) > 0


def test_interval_page_lists_the_dst_days_fifty_half_hours(viewer: TestClient) -> None:
    """The configured zone here is UTC: a DST zone's page is the API's (tested above); the
    page follows CDRHUB_TIMEZONE, so a 25-hour day is checked on the API (test_planning)."""
    html = viewer.get("/reports/intervals", params={"from": "2026-11-01", "interval": "15"}).text
    assert len(_cells(html, "offered")) == 96


def test_agent_rows_open_that_agents_calls_and_stored_text_stays_inert(
    viewer: TestClient,
) -> None:
    html = viewer.get("/reports/agents", params={"from": "2026-11-01", "to": "2026-11-01"}).text
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    links = [unescape(h) for h in re.findall(r'href="([^"]+)" class="agent-calls"', html)]
    assert any("agent=%E6%9D%8E%E9%9B%B7" in link for link in links)  # 李雷
    target = next(link for link in links if "agent=ann" in link)
    calls_page = viewer.get(target)
    assert calls_page.status_code == 200
    assert "2026-11-01" in target


def test_bad_values_are_shown_on_the_page_by_name(viewer: TestClient) -> None:
    page = viewer.get("/reports/staffing", params={"sl_target": "2"})
    assert page.status_code == 422
    assert "sl_target" in page.text


def test_downloads_are_the_reports_files(viewer: TestClient) -> None:
    xlsx = viewer.get("/reports/staffing/download", params={"from": "2026-11-01",
                                                             "format": "xlsx"})  # fmt: skip
    assert xlsx.status_code == 200
    assert (
        'name="Staffing"'
        in zipfile.ZipFile(io.BytesIO(xlsx.content)).read("xl/workbook.xml").decode()
    )
    csv = viewer.get("/reports/agents/download", params={"from": "2026-11-01", "format": "csv"})
    assert csv.content.startswith(b"\xef\xbb\xbfagent,handled")
    assert "李雷" in csv.content.decode("utf-8-sig")


def test_chinese_pages_name_the_columns_in_chinese(viewer: TestClient) -> None:
    viewer.cookies.set("lang", "zh-CN")
    html = viewer.get("/reports/staffing", params={"from": "2026-11-01"}).text
    assert "所需坐席" in html and "排班测算" in html
