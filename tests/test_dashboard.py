"""The dashboard in a real browser (Playwright driving the system Chromium) on a real server.

Needs Chromium at /usr/bin/chromium (Debian: ``apt-get install chromium``) and the
``playwright`` package (in the ``test`` extra). Without them these tests skip, saying so;
with ``CDRHUB_TEST_REQUIRE_BROWSER=1`` (CI) a skip is a failure. Screenshots of every page
land in ``test-output/screenshots/`` for review.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdrhub import cdr, simulate, users
from cdrhub.apikeys import create_key
from cdrhub.store import Push, Store

from .conftest import TOKEN, Server

CHROMIUM = Path(os.environ.get("CDRHUB_TEST_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
ZONE = "Asia/Shanghai"
PASSWORD = "correct horse battery"
EVIL = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


def _unavailable(reason: str) -> None:
    message = (
        f"browser tests skipped: {reason}. Install Chromium (Debian: apt-get install chromium) "
        "and `pip install -e '.[test]'` to run them"
    )
    if os.environ.get("CDRHUB_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(message.replace("skipped", "required"))
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


class Site:
    """A running cdrhub with seeded calls, a user, an API key, and a browser page on it."""

    def __init__(self, server: Server, store: Store, page: Any, key: str, kind: str) -> None:
        self.server, self.store, self.page, self.key, self.kind = server, store, page, key, kind
        self.dialogs: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def url(self, path: str) -> str:
        return self.server.url + path

    def sign_in(self, name: str = "ann", password: str = PASSWORD) -> None:
        self.page.goto(self.url("/"))
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=password]", password)
        self.page.click("#sign-in")
        self.page.wait_for_load_state()

    def api(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.get(self.url(path), params=params or None, headers=headers).json()

    def push(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url("/cc/callback"), json=body, headers={"token": TOKEN})

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{self.kind}-{name}.png"), full_page=True)


def _write(store: Store, bodies: list[dict[str, Any]]) -> None:
    pushes = []
    for body in bodies:
        raw = json.dumps(body, ensure_ascii=False).encode()
        pushes.append(Push(cdr.parse(raw), raw))
    store.write(pushes)


@pytest.fixture
def site(
    browser: Any, serve: Callable[..., Server], store: Store, store_url: str
) -> Iterator[Site]:
    now = datetime.now(UTC)
    from zoneinfo import ZoneInfo

    tomorrow = now + timedelta(days=1)  # calls of today, local time, that have happened
    today = simulate.calls(600, seed=5, end=tomorrow, days=1, tz=ZoneInfo(ZONE))
    _write(store, [c for c in today if c["startTime"] < now.timestamp() * 1000 - 60_000])
    _write(store, list(simulate.calls(400, seed=6, end=now, days=20, tz=ZoneInfo(ZONE))))
    users.create(store, "ann", "admin", PASSWORD)
    users.create(store, "vic", "viewer", PASSWORD)
    key = create_key(store, "dashboard tests")[1]
    server = serve(CDRHUB_TIMEZONE=ZONE)
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    try:
        yield Site(server, store, context.new_page(), key, store_url.split(":")[0])
    finally:
        context.close()


def _kpis(page: Any) -> dict[str, str]:
    return {
        el.get_attribute("data-metric"): (el.get_attribute("data-value") or el.inner_text())
        for el in page.query_selector_all("#kpis .kpi")
    }


def test_sign_in_and_the_overview_equals_the_api(site: Site) -> None:
    page = site.page
    page.goto(site.url("/"))
    assert "/login" in page.url
    site.shot("login")
    site.sign_in()
    for period in ("today", "30d"):
        page.goto(site.url(f"/?range={period}"))
        api = site.api("/api/stats?" + page.get_attribute("#overview", "data-api").split("?")[1])
        expected = api["groups"][0]
        shown = _kpis(page)
        assert int(shown["calls"].split("\n")[-1]) == expected["calls"] > 0
        assert int(shown["abandoned"].split("\n")[-1]) == expected["abandoned"]
        for metric in ("answer_rate", "service_level", "avg_wait_seconds", "avg_talk_seconds"):
            assert float(shown[metric]) == pytest.approx(expected[metric]), metric
        assert float(shown["cost_total"]) == pytest.approx(expected["cost_total"])
    assert page.locator("#agents tbody tr").count() > 0
    assert page.locator("#reasons li").count() > 0
    site.shot("overview")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site.url("/?range=30d"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    site.shot("overview-phone")


def test_filter_the_calls_open_one_and_find_its_recording(site: Site) -> None:
    page = site.page
    site.sign_in()
    page.goto(site.url("/calls"))
    page.select_option("select[name=direction]", "0")
    page.select_option("select[name=answered]", "true")
    page.click("#filter")
    page.wait_for_load_state()
    rows = page.locator("#calls tbody tr")
    assert rows.count() > 0
    assert set(rows.locator("td:nth-child(2)").all_inner_texts()) == {"inbound"}
    assert set(rows.locator("td:nth-child(6)").all_inner_texts()) == {"yes"}
    assert "direction=0" in page.get_attribute("#export", "href")
    site.shot("calls")
    with_recording = site.api("/api/calls", direction="0", answered="true", has_recording="true")
    call = with_recording["items"][0]
    page.goto(site.url(f"/calls/{call['call_id']}"))
    assert page.get_attribute("#recording", "src") == call["record_url"]
    assert page.locator("#timeline li").count() >= 3
    assert "inbound" in page.inner_text("#fields")
    site.shot("call")


def test_switch_to_chinese(site: Site) -> None:
    page = site.page
    site.sign_in()
    page.click("#lang-zh-CN")
    page.wait_for_load_state()
    assert "概览" in page.inner_text("header nav")
    assert "时区 Asia/Shanghai" in page.inner_text("#zone")
    assert "接通率" in page.inner_text("#kpis")
    site.shot("overview-zh")
    page.goto(site.url("/calls"))
    assert "通话记录" in page.inner_text("header nav")
    site.shot("calls-zh")


def test_hostile_call_data_shows_as_text(site: Site) -> None:
    page = site.page
    site.sign_in()
    now = int(time.time() * 1000)
    body = {
        "callId": "evil-1",
        "direction": 2,
        "startTime": now - 5000,
        "answered": True,
        "agentNickName": EVIL[0],
        "agentName": EVIL[1],
        "hangupReason": EVIL[0],
        "intent": EVIL[1],
        "taskId": EVIL[0],
        "recordUrl": "javascript:alert(1)",
    }
    assert site.push(body).status_code == 200
    for i in range(20):  # enough of them to rank first in the overview's top-15 tables
        assert site.push(body | {"callId": f"evil-more-{i}"}).status_code == 200
    page.goto(site.url("/calls?direction=2"))
    assert EVIL[0] in page.inner_text("#calls") and EVIL[1] in page.inner_text("#calls")
    page.goto(site.url("/?range=today&direction=2"))
    assert EVIL[0] in page.inner_text("#reasons") and EVIL[1] in page.inner_text("#aicc-intents")
    page.goto(site.url("/calls/evil-1"))
    assert EVIL[0] in page.inner_text("#fields")
    assert page.locator("#recording").count() == 0  # not an http(s) URL: no player
    assert page.locator("img[src=x]").count() == 0 and page.locator("main script").count() == 0
    site.shot("call-hostile")
    assert site.dialogs == []


def test_new_calls_appear_without_a_reload(site: Site) -> None:
    page = site.page
    site.sign_in()
    page.goto(site.url("/calls"))
    page.evaluate("window.__sameDocument = true")
    assert (
        site.push(
            {"callId": "live-1", "direction": 1, "startTime": int(time.time() * 1000)}
        ).status_code
        == 200
    )
    page.wait_for_selector("a[href='/calls/live-1']", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True  # the page itself never reloaded
    assert page.is_visible("#live-note")
    page.goto(site.url("/?range=today"))
    before = int(_kpis(page)["calls"].split("\n")[-1])
    page.evaluate("window.__sameDocument = true")
    assert (
        site.push(
            {"callId": "live-2", "direction": 0, "startTime": int(time.time() * 1000)}
        ).status_code
        == 200
    )
    deadline = time.monotonic() + 20  # (wait_for_function evaluates a string: the CSP says no)
    while _kpis(page)["calls"].split("\n")[-1] != str(before + 1) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _kpis(page)["calls"].split("\n")[-1] == str(before + 1)
    assert page.evaluate("window.__sameDocument") is True


def test_quarantine_is_for_admins_and_replays(site: Site) -> None:
    page = site.page
    bad = {"callId": "q-1", "direction": 0, "startTime": "yesterday"}
    assert site.push(bad).status_code == 422
    site.sign_in("vic")
    assert httpx.get(site.url("/quarantine"), cookies=_cookies(page)).status_code == 403
    page.context.clear_cookies()
    site.sign_in("ann")
    page.goto(site.url("/quarantine"))
    assert "q-1" in page.inner_text("#quarantine") and "invalid_record" in page.inner_text(
        "#quarantine"
    )
    site.shot("quarantine")
    page.click("#replay-all")
    page.wait_for_load_state()
    assert "0 / 1 stored" in page.inner_text("#replayed")  # still invalid: stays quarantined
    assert "still refused" in page.inner_text("#replayed")


def _cookies(page: Any) -> dict[str, str]:
    return {c["name"]: c["value"] for c in page.context.cookies()}


def test_security_headers_csrf_and_sign_in_throttling(site: Site) -> None:
    login = httpx.get(site.url("/login"))
    csp = login.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert login.headers["x-frame-options"] == "DENY"
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    token = re.search(r'name="csrf" value="([^"]+)"', login.text)
    assert token is not None
    jar = dict(login.cookies)
    no_token = httpx.post(
        site.url("/login"), data={"name": "ann", "password": PASSWORD}, cookies=jar
    )
    assert no_token.status_code == 403
    statuses = []
    for _ in range(6):
        answer = httpx.post(
            site.url("/login"),
            data={"name": "ann", "password": "wrong", "csrf": token[1]},
            cookies=jar,
        )
        statuses.append(answer.status_code)
    assert statuses == [401] * 5 + [429]
    # Even the right password waits out the window: guessing cannot continue.
    right = httpx.post(
        site.url("/login"),
        data={"name": "ann", "password": PASSWORD, "csrf": token[1]},
        cookies=jar,
    )
    assert right.status_code == 429
