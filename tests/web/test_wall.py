"""The wallboard (/wall) in a real browser (Playwright on the system Chromium) on a real
server: a signed-in viewer and a wallboard link see the API's figures, the page updates itself
after a push, a revoked link is refused, hostile data stays text, no console error and no CSP
violation, and screenshots in both themes and both languages (test-output/screenshots/)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from cdrhub.auth import users
from cdrhub.auth import wallboard as links
from cdrhub.auth.apikeys import create_key
from cdrhub.pull import simulate
from cdrhub.store import Store
from cdrhub.web import i18n
from cdrhub.web.routes import percent
from tests.helpers import TOKEN, Server
from tests.web.test_dashboard import EVIL, PASSWORD, SHOTS, ZONE, _write, browser  # noqa: F401

FIGURES = ("calls", "answered", "abandoned", "service_level", "asa_seconds", "longest_wait_seconds")
#: Records CSP violations from the first script on (the page's own included).
CSP_PROBE = (
    "window.__csp = []; document.addEventListener('securitypolicyviolation',"
    " e => window.__csp.push(e.violatedDirective));"
)


def shown(name: str, value: Any, language: str = "en") -> str:
    """A figure as the wallboard must show it (the dashboard's own formatting, durations in
    the page's language)."""
    if name == "service_level":
        return percent(value)
    if name in ("asa_seconds", "longest_wait_seconds"):
        return i18n.duration(value, language)
    return str(value)


class Wall:
    """A running cdrhub with today's calls, a viewer, an API key, and a browser context."""

    def __init__(self, server: Server, store: Store, context: Any, key: str) -> None:
        self.server, self.store, self.context, self.key = server, store, context, key
        self.page = context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console",
            lambda m: (
                self.errors.append(f"{m.text} @ {m.location.get('url')}")
                if m.type == "error"
                else None
            ),
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        #: Failed responses by path: a console "Failed to load resource" names none.
        self.failed: list[str] = []
        self.page.on(
            "response",
            lambda r: self.failed.append(httpx.URL(r.url).path) if r.status >= 400 else None,
        )

    def url(self, path: str) -> str:
        return self.server.url + path

    def sign_in(self, name: str = "vic") -> None:
        self.page.goto(self.url("/login?next=/wall"))
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("#sign-in")
        self.page.wait_for_load_state()

    def api(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.get(self.url(path), params=params or None, headers=headers).json()

    def push(self, body: dict[str, Any]) -> None:
        response = httpx.post(self.url("/cc/callback"), json=body, headers={"token": TOKEN})
        assert response.status_code == 200, response.text

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"wall-{name}.png"))

    def clean(self, refused: int | None = 0) -> None:
        """No console error, no CSP violation, no script ran from data. Failed loads are
        only the ``refused`` wallboard requests expected (None: any number), and the sign-in
        page's favicon (base.html has none yet; the wallboard has its own)."""
        expected = [p for p in self.failed if p != "/favicon.ico"]
        assert refused is None or len(expected) == refused
        assert all(p.startswith("/wall") for p in expected)
        problems = [
            e
            for e in self.errors
            if not (e.startswith("Failed to load resource") and ("/wall" in e or "favicon" in e))
        ]
        assert problems == []
        assert self.page.evaluate("window.__csp") == []
        assert self.dialogs == []


@pytest.fixture
def wall(browser: Any, serve: Callable[..., Server], store: Store) -> Iterator[Wall]:  # noqa: F811
    now = datetime.now(UTC)
    # Yesterday and today (local) up to now: simulate never writes a call that has not ended.
    today = simulate.calls(800, seed=7, end=now, days=2, tz=ZoneInfo(ZONE))
    _write(store, [c for c in today if c["startTime"] < now.timestamp() * 1000 - 60_000])
    users.create(store, "vic", "viewer", PASSWORD)
    key = create_key(store, "wall tests")[1]
    server = serve(CDRHUB_TIMEZONE=ZONE)
    context = browser.new_context(locale="en-US", viewport={"width": 1920, "height": 1080})
    context.add_init_script(CSP_PROBE)
    try:
        yield Wall(server, store, context, key)
    finally:
        context.close()


def page_figures(page: Any) -> dict[str, Any]:
    """What the wallboard shows: today's cards, the quarters' rows, the bars."""
    today = {
        el.get_attribute("data-figure"): el.query_selector("b").inner_text()
        for el in page.query_selector_all("#today .fig")
    }
    quarters = [
        {td.get_attribute("data-figure"): td.inner_text() for td in row.query_selector_all("td")}
        for row in page.query_selector_all("#quarters tbody tr")
    ]
    bars = [
        (bar.query_selector(".label").text_content(), bar.query_selector(".value").text_content())
        for bar in page.query_selector_all("#hour-chart .bar")
    ]
    return {"today": today, "quarters": quarters, "bars": bars}


def expected_figures(data: dict[str, Any], language: str = "en") -> dict[str, Any]:
    """The same, as it must read for a /wall/data answer."""
    return {
        "today": {name: shown(name, data["today"][name], language) for name in FIGURES},
        "quarters": [
            {
                "from": q["from"][11:16],
                **{name: shown(name, q[name], language) for name in FIGURES},
            }
            for q in data["last_hour"]
        ],
        "bars": [(q["from"][11:16], str(q["calls"])) for q in data["last_hour"]],
    }


def same_as_api(wall: Wall, data: dict[str, Any]) -> None:
    """/wall/data's figures are /api/stats' for the same bounds (today and each quarter)."""
    for period in (data["today"], *data["last_hour"]):
        api = wall.api("/api/stats", **{"from": period["from"], "to": period["to"]})["groups"][0]
        for name in FIGURES[:-1]:  # longest wait is the wallboard's own (tests/reports)
            assert period[name] == api[name], (period["from"], name)


def wait_until(check: Callable[[], bool], seconds: float = 20) -> None:
    # (wait_for_function evaluates a string: the CSP says no)
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_viewer_sees_the_apis_figures_updating_in_both_themes_and_languages(wall: Wall) -> None:
    page = wall.page
    page.goto(wall.url("/wall"))
    assert "/login" in page.url  # signed out: the sign-in page, then back here
    wall.sign_in()
    page.goto(wall.url("/wall?refresh=2"))
    data = page.request.get(wall.url("/wall/data")).json()  # the browser's own session
    assert data["today"]["calls"] > 0 and data["alerts"] == []
    assert page_figures(page) == expected_figures(data)
    same_as_api(wall, data)
    assert page.locator("#hour-chart rect").count() == 4
    assert page.is_visible("#no-alerts")
    # A new call now: the figures change without a reload.
    page.evaluate("window.__sameDocument = true")
    before = data["today"]["calls"]
    start = int(time.time() * 1000) - 30_000
    wall.push({"callId": "wall-live-1", "direction": 0, "startTime": start,
               "inQueueTime": start, "endTime": start + 400_000})  # fmt: skip
    wait_until(lambda: page_figures(page)["today"]["calls"] == str(before + 1))
    assert page.evaluate("window.__sameDocument") is True
    assert page_figures(page)["today"]["longest_wait_seconds"] == "6m 40s"  # the 400 s wait
    data = page.request.get(wall.url("/wall/data")).json()
    wait_until(
        lambda: (
            page_figures(page) == expected_figures(page.request.get(wall.url("/wall/data")).json())
        )
    )
    same_as_api(wall, data)
    # Themes: dark by default, the toggle switches and is remembered across loads.
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    wall.shot("dark-en")
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    wall.shot("light-en")
    page.goto(wall.url("/wall?theme=dark"))
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    # Chinese.
    page.click("#lang-zh-CN")
    page.wait_for_load_state()
    assert "/wall" in page.url
    assert "今日实时" in page.inner_text("h1")
    assert "最长等待" in page.inner_text("#today")
    wall.shot("dark-zh")
    page.click("#theme-toggle")
    wall.shot("light-zh")
    wall.clean()


def test_a_link_opens_the_wallboard_alone_until_it_is_revoked(
    wall: Wall,
    browser: Any,  # noqa: F811
) -> None:
    link, token = links.create_link(wall.store, "floor-tv")
    context = browser.new_context(locale="zh-CN", viewport={"width": 1920, "height": 1080})
    context.add_init_script(CSP_PROBE)
    try:
        tv = Wall(wall.server, wall.store, context, wall.key)
        page = tv.page
        response = page.goto(tv.url(f"/wall?link={token}&refresh=2"))
        assert response.status == 200
        assert response.headers["referrer-policy"] == "no-referrer"
        data = httpx.get(tv.url("/wall/data"), params={"link": token}).json()
        assert page_figures(page) == expected_figures(data, "zh-CN")
        assert "今日实时" in page.inner_text("h1")  # the TV's language
        # The link opens nothing else: no calls, no API, no other page.
        assert httpx.get(tv.url("/wall/data")).status_code == 401
        assert httpx.get(tv.url("/api/calls"), params={"link": token}).status_code == 401
        page.goto(tv.url(f"/calls?link={token}"))
        assert "/login" in page.url
        page.goto(tv.url(f"/wall?link={token}&refresh=2"))
        page.evaluate("window.__sameDocument = true")
        links.revoke_link(wall.store, str(link.id))
        wait_until(lambda: page.is_visible("#wall-stale"))  # its next refresh was refused
        assert page.evaluate("window.__sameDocument") is True
        refused = httpx.get(tv.url("/wall/data"), params={"link": token})
        assert refused.status_code == 403
        assert refused.json()["fields"] == [
            {"field": "link", "value": None, "expected": "an active wallboard link"}
        ]
        assert page.goto(tv.url(f"/wall?link={token}")).status == 403
        tv.shot("revoked")
        tv.clean(refused=None)  # the refreshes refused until the reload, and the reload
        assert token not in wall.server.log.read_text()  # never logged
    finally:
        context.close()


def test_hostile_data_stays_text_on_the_wallboard(wall: Wall, browser: Any) -> None:  # noqa: F811
    """Payloads in every stored text field, a hostile link name and a hostile link value,
    with the CSP switched off in the browser so an injected script would really run."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 800})
    context.add_init_script(CSP_PROBE)
    try:
        hostile = Wall(wall.server, wall.store, context, wall.key)
        page = hostile.page
        now = int(time.time() * 1000)
        for n, evil in enumerate(EVIL):
            hostile.push({"callId": evil, "direction": 2, "startTime": now - 5000 + n,
                          "inQueueTime": now - 5000, "answered": True, "answerTime": now - 4000,
                          "endTime": now - 1000, "agentName": evil, "agentNickName": evil,
                          "hangupReason": evil, "intent": evil, "taskId": evil})  # fmt: skip
        _, token = links.create_link(wall.store, EVIL[1])
        page.goto(hostile.url(f"/wall?link={token}&refresh=2"))
        data = httpx.get(hostile.url("/wall/data"), params={"link": token}).json()
        assert page_figures(page) == expected_figures(data)
        for evil in EVIL:
            address = hostile.url("/wall?" + str(httpx.QueryParams(link=evil)))
            assert page.goto(address).status == 403
            assert page.locator("img[src=x]").count() == 0
            assert page.locator("main script, [onerror]").count() == 0
        page.goto(hostile.url(f"/wall?link={token}&refresh=2"))
        time.sleep(2.5)  # one refresh with the hostile calls in it
        assert page.locator("img[src=x], [onerror]").count() == 0
        assert hostile.dialogs == []
        hostile.clean(refused=len(EVIL))
    finally:
        context.close()
