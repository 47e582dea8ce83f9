"""Page fixes seen by a new user, in real Chromium: offline /docs, the favicon, the call page
(timeline, field order, cost precision, the way back, the vendor's own example) and Chinese
durations and hangup reasons."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.web.test_dashboard import ZONE, Site, browser, site  # the fixtures, shared

__all__ = ["browser", "site"]


def test_docs_render_with_no_internet(site: Site) -> None:
    """/docs is Swagger UI from the package: with every outside request blocked it renders
    the API's operations, with no console error and no CSP violation."""
    page = site.page
    outside: list[str] = []
    problems: list[str] = []

    def only_ours(route: Any) -> None:
        if route.request.url.startswith(site.server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.context.route("**/*", only_ours)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(site.url("/docs"))
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert "cdrhub" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".swagger-ui .opblock").count() > 5
    assert "/api/stats" in page.inner_text(".swagger-ui")
    assert outside == [] and problems == []
    site.shot("docs")


def test_favicon_is_served(site: Site) -> None:
    """No page logs a 404 for the icon the browser asks for."""
    page = site.page
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    site.sign_in()
    page.goto(site.url("/calls"))
    page.wait_for_load_state("networkidle")
    response = page.request.get(site.url("/favicon.ico"))
    assert response.status == 200 and response.headers["content-type"] == "image/x-icon"
    assert failed == []


#: The vendor's own example push (the seed's curl), as NXCC documents it: an answer time and
#: callDuration 7, but no ``answered`` flag.
VENDOR_EXAMPLE = {
    "agentName": "agent@example.com", "answerTime": 1691372192000, "callDuration": 7,
    "callId": "b1920376-5e15-4f22-9996-6233f297685e", "callee": "1001@10.0.0.1:5060",
    "caller": "85235757581", "direction": 2, "endTime": 1691372213000, "intent": "转人工-成功",
    "orderId": "ORDER_ID", "other": "OTHER", "startTime": 1691372191000,
    "taskId": "1688363452814331904", "totalCustomerPrice": 0.245,
}  # fmt: skip


def _fields(page: Any) -> list[str]:
    return [r.get_attribute("data-field") for r in page.locator("#fields tr").all()]


def test_the_call_page_reads_like_a_call(site: Site) -> None:
    """The vendor's example: says why it counts as not answered although it has an answer
    time, the cost as sent (0.245), a timeline of one row per moment, fields in reading
    order, and a link back to the list with the list's filters."""
    page = site.page
    assert site.push(VENDOR_EXAMPLE).status_code == 200
    site.sign_in()
    page.goto(site.url("/calls?direction=2&agent=agent%40example.com"))
    page.locator("#calls tbody tr a").first.click()
    page.wait_for_load_state()
    assert page.text_content("#call-id") == VENDOR_EXAMPLE["callId"]
    counted = page.inner_text("#counted")
    answer = datetime.fromtimestamp(VENDOR_EXAMPLE["answerTime"] / 1000, ZoneInfo(ZONE))
    assert "no answered flag" in counted and f"{answer:%Y-%m-%d %H:%M:%S}" in counted, counted
    assert "call duration of 7s" in counted
    assert page.inner_text("#answered-state") == "Not answered"
    assert page.inner_text("tr[data-field=answered] td") == "not sent"
    assert page.inner_text("tr[data-field=totalCustomerPrice] td") == "0.245"
    rows = page.locator("#timeline tbody tr")
    assert [r.locator("th").inner_text() for r in rows.all()] == ["Start", "Answer", "End"]
    assert rows.nth(1).locator("td").nth(1).inner_text() == "+1s"
    box = [rows.nth(i).bounding_box() for i in range(3)]
    assert box[0]["y"] < box[1]["y"] < box[2]["y"]  # one moment per line, not a run-on line
    order = _fields(page)
    assert order[:3] == ["direction", "caller", "callee"]
    assert order.index("answered") < order.index("startTime") < order.index("endTime")
    assert order.index("endTime") < order.index("callDuration") < order.index("orderId")
    site.shot("call-vendor-example")
    page.click("#back")
    page.wait_for_load_state()
    assert page.url.endswith("/calls?direction=2&agent=agent%40example.com")
    assert page.input_value("input[name=agent]") == "agent@example.com"


def test_the_call_page_in_chinese(site: Site) -> None:
    """Chinese durations (3分14秒) and hangup reasons in words, with NXCC's name beside."""
    page = site.page
    body = {
        "callId": "zh-1", "direction": 0, "answered": True, "startTime": 1764547200000,
        "inQueueTime": 1764547203000, "outQueueTime": 1764547213000,
        "answerTime": 1764547216000, "endTime": 1764547410000, "callDuration": 194,
        "hangupReason": "USER_BUSY", "hangupCode": 17, "totalCustomerPrice": 0.245,
    }  # fmt: skip
    assert site.push(body).status_code == 200
    site.sign_in()
    page.click("#lang-zh-CN")
    page.wait_for_load_state()
    page.goto(site.url("/calls/zh-1"))
    assert "通话: 3分14秒" in page.inner_text("#summary")
    assert page.inner_text("tr[data-field=callDuration] td") == "3分14秒"
    assert page.inner_text("tr[data-field=hangupReason] td") == "用户忙 (USER_BUSY)"
    assert "已接通" in page.inner_text("#counted")
    assert "返回通话记录" in page.inner_text("#back")
    site.shot("call-zh")
    page.goto(site.url("/calls?direction=0"))
    assert "正常挂机" in page.inner_text("#calls")  # the simulated calls, in words
    assert not re.search(r"\d+m \d+s", page.inner_text("#calls"))
