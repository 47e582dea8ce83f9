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
from zoneinfo import ZoneInfo

import httpx
import pytest

from cdrhub import cdr
from cdrhub.auth import users
from cdrhub.auth.apikeys import create_key
from cdrhub.forward import destinations
from cdrhub.pull import simulate
from cdrhub.store import Push, Store
from cdrhub.web.routes import duration, percent
from tests.helpers import REPO, TOKEN, Server
from tests.helpers.calls import AWKWARD_IDS
from tests.helpers.figures import destination_cells, kpi_text
from tests.helpers.receiver import receiving

CHROMIUM = Path(os.environ.get("CDRHUB_TEST_CHROMIUM", "/usr/bin/chromium"))
SHOTS = REPO / "test-output" / "screenshots"


def _zone_near_midday() -> str:
    """The call center's zone for these tests: Shanghai, unless its day is about to turn.

    The fixtures write calls of "today" (local) up to now, and the pages show today: run
    just after local midnight, today would hold no calls. So the first zone of these (none
    with daylight saving, none at UTC, so that showing local time is always tested) whose
    clock reads between 11:00 and 22:00 now is used (most of a
    business day behind it, midnight hours ahead); at any hour
    one of them does.
    """
    now = datetime.now(UTC)
    for name in (
        "Asia/Shanghai",
        "Asia/Kolkata",
        "Africa/Nairobi",
        "Atlantic/Cape_Verde",
        "America/Bogota",
        "America/Phoenix",
        "Pacific/Honolulu",
        "Pacific/Guam",
    ):
        if 11 <= now.astimezone(ZoneInfo(name)).hour < 22:
            return name
    return "Asia/Shanghai"


ZONE = _zone_near_midday()
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
    """Each KPI card's big figure as the browser shows it."""
    return {
        el.get_attribute("data-metric"): el.query_selector("b").inner_text()
        for el in page.query_selector_all("#kpis .kpi")
    }


def _period(days: int) -> tuple[datetime, datetime]:
    """The last ``days`` days up to the end of today in the call center's zone, worked out
    here rather than read from the page."""
    zone = ZoneInfo(ZONE)
    today = datetime.now(zone).date()
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone)
    return end - timedelta(days=days), end


def _bars(page: Any, chart: str) -> list[tuple[str, list[str]]]:
    """Each bucket of a chart as its table of figures shows it (the text beside the canvas,
    for screen readers and no JavaScript): the bucket's key and its cells."""
    return page.eval_on_selector_all(
        f"#{chart} table.numbers tbody tr",
        "rs => rs.map(r => [r.dataset.key, Array.from(r.cells).map(c => c.textContent)])",
    )


def _hbars(page: Any, list_id: str) -> list[tuple[str, int]]:
    items = page.locator(f"#{list_id} li")
    return [
        # The full label is the title (hover); the cell may show it shortened.
        (
            items.nth(i).locator(".name").get_attribute("title") or items.nth(i).inner_text(),
            int(items.nth(i).locator("b").inner_text()),
        )  # fmt: skip
        for i in range(items.count())
    ]


def _counted(groups: list[dict[str, Any]], key: str) -> list[tuple[str, int]]:
    items = [(g["key"][key] or "–", g["calls"]) for g in groups]
    return sorted(items, key=lambda item: -item[1])[:12]


def test_sign_in_and_the_overview_equals_the_api(site: Site) -> None:
    page = site.page
    page.goto(site.url("/"))
    assert "/login" in page.url
    site.shot("login")
    site.sign_in()
    for period, days, unit in (("today", 1, "hour"), ("30d", 30, "day")):
        page.goto(site.url(f"/?range={period}"))
        start, end = _period(days)
        bounds = {"from": start.isoformat(), "to": end.isoformat()}
        assert f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {ZONE}" in page.inner_text("#period")
        expected = site.api("/api/stats", **bounds)["groups"][0]
        assert expected["calls"] > 0
        assert _kpis(page) == kpi_text(expected)
        per = {g["key"][unit]: g for g in site.api("/api/stats", group_by=unit, **bounds)["groups"]}
        bars = _bars(page, "volume")
        assert len(bars) == (24 if unit == "hour" else days)
        for key, cells in bars:
            g = per.get(key, {"calls": 0, "answered": 0, "abandoned": 0})
            rest = g["calls"] - g["answered"] - g["abandoned"]
            shown = key[11:16] if unit == "hour" else key
            assert cells == [shown, *map(str, (g["calls"], g["answered"], rest, g["abandoned"]))]
        for key, cells in _bars(page, "service"):
            level = per.get(key, {"service_level": None})["service_level"]
            assert cells[1] == percent(level), key
        reasons = site.api("/api/stats", group_by="hangup_reason", **bounds)["groups"]
        assert _hbars(page, "reasons") == _counted(reasons, "hangup_reason")
        for name, list_id in (("task_id", "aicc-tasks"), ("intent", "aicc-intents")):
            aicc = site.api("/api/stats", group_by=name, direction="2", **bounds)["groups"]
            assert _hbars(page, list_id) == _counted(aicc, name), name
        agents = [
            g
            for g in site.api("/api/stats", group_by="agent", **bounds)["groups"]
            if g["key"]["agent"]
        ]
        agents.sort(key=lambda g: (-g["answered"], -g["calls"]))
        rows = page.locator("#agents tbody tr")
        assert rows.count() == min(10, len(agents)) > 0
        for i, g in enumerate(agents[: rows.count()]):
            cells = rows.nth(i).locator("td").all_inner_texts()
            assert cells == [
                g["key"]["agent"],
                str(g["calls"]),
                str(g["answered"]),
                duration(g["avg_talk_seconds"]),
            ]
    site.shot("overview")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site.url("/?range=30d"))
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    site.shot("overview-phone")


def test_dates_typed_into_the_overview_make_a_custom_period(site: Site) -> None:
    """Today is selected; typing dates and pressing Show shows those dates, not today."""
    page = site.page
    site.sign_in()
    page.goto(site.url("/?range=today"))
    first, last = _period(10)[0].date(), _period(3)[0].date()
    page.fill("input[name=from]", first.isoformat())
    page.fill("input[name=to]", last.isoformat())
    page.click("#show")
    page.wait_for_load_state()
    assert "range=custom" in page.url
    assert f"{first:%Y-%m-%d} 00:00 – {last + timedelta(days=1):%Y-%m-%d} 00:00" in page.inner_text(
        "#period"
    )
    assert len(_bars(page, "volume")) == (last - first).days + 1


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
    # The first row's start, as the call center's clock reads it (the zone's, not UTC).
    newest = site.api("/api/calls", direction="0", answered="true", limit="1")["items"][0]
    local = datetime.fromtimestamp(newest["start_time_ms"] / 1000, ZoneInfo(ZONE))
    assert rows.first.locator("td").first.inner_text() == f"{local:%Y-%m-%d %H:%M:%S}"
    assert local.utcoffset() != timedelta(0)
    site.shot("calls")
    with_recording = site.api("/api/calls", direction="0", answered="true", has_recording="true")
    call = with_recording["items"][0]
    page.goto(site.url(f"/calls/{call['call_id']}"))
    assert page.get_attribute("#recording", "src") == call["record_url"]
    assert page.locator("#voicemail").count() == 0
    assert page.locator("#timeline tbody tr").count() >= 3
    assert "inbound" in page.inner_text("#fields")
    site.shot("call")


def test_every_call_id_opens_from_its_link_in_a_browser(site: Site) -> None:
    """Clicking a row's link opens that row's call, whatever its id holds: the browser
    resolves ``..`` and reads ``?``, ``#`` and ``%`` as it likes, so this is where an
    unencoded or path-shaped link shows."""
    page = site.page
    site.sign_in()
    now = int(time.time() * 1000)
    for n, call_id in enumerate(AWKWARD_IDS):  # the newest calls: all on the first page
        body = {"callId": call_id, "startTime": now + n, "agentName": f"awkward-{n}"}
        assert site.push(body).json()["result"] == "created", repr(call_id)
    page.goto(site.url("/calls"))
    for n, call_id in enumerate(AWKWARD_IDS):
        row = page.locator("#calls tbody tr").filter(has_text=re.compile(rf"awkward-{n}\b"))
        assert row.count() == 1, call_id
        row.locator("a").click()
        page.wait_for_load_state()
        assert page.text_content("tr[data-field=agentName] td") == f"awkward-{n}", page.url
        # HTML reads a lone CR as LF; every other character is shown as sent.
        shown = page.text_content("#call-id")
        assert shown == call_id.replace("\r", "\n"), (call_id, page.url)
        page.go_back()
        page.wait_for_load_state()


def test_a_voicemail_has_its_player(site: Site) -> None:
    """A caller who was not answered and left a message: the player plays leaveMsgUrl."""
    page = site.page
    site.sign_in()
    url = "https://rec.example.com/voicemail/vm-1.wav"
    now = int(time.time() * 1000)
    body = {"callId": "vm-1", "direction": 0, "answered": False, "startTime": now - 60_000,
            "inQueueTime": now - 58_000, "endTime": now - 20_000, "leaveMsgUrl": url}  # fmt: skip
    assert site.push(body).status_code == 200
    page.goto(site.url("/calls/vm-1"))
    assert page.get_attribute("#voicemail", "src") == url
    assert page.locator("#recording").count() == 0
    assert "Voicemail" in page.inner_text(".players")
    site.shot("call-voicemail")


def test_switch_to_chinese(site: Site) -> None:
    page = site.page
    site.sign_in()
    page.click("#lang-zh-CN")
    page.wait_for_load_state()
    assert "概览" in page.inner_text("header nav")
    assert f"时区 {ZONE}" in page.inner_text("#zone")
    assert "接通率" in page.inner_text("#kpis")
    site.shot("overview-zh")
    page.goto(site.url("/calls"))
    assert "通话记录" in page.inner_text("header nav")
    site.shot("calls-zh")


def _no_markup_from_data(page: Any, texts: tuple[str, ...], where: str) -> None:
    """The texts show literally inside ``main``, and nothing in it is a script, an image
    from them, or an event handler."""
    shown = page.inner_text("main")
    for text in texts:
        assert text in shown, (where, text)
    # Data islands (type application/json) are data, never run; no other script is in main.
    assert page.locator("main script:not([type='application/json'])").count() == 0, where
    assert page.locator("img[src=x]").count() == 0, where
    assert page.locator("[onerror]").count() == 0, where


def test_hostile_call_data_shows_as_text(
    browser: Any, serve: Callable[..., Server], store: Store
) -> None:
    """Both payloads in agentNickName, hangupReason and intent (and the other free text),
    with the CSP switched off in the browser so an injected script would really run."""
    users.create(store, "ann", "admin", PASSWORD)
    server = serve(CDRHUB_TIMEZONE=ZONE)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    try:
        site = Site(server, store, context.new_page(), create_key(store, "xss")[1], "xss")
        page = site.page
        site.sign_in()
        page.goto(site.url("/calls?direction=2"))
        # First prove the dialog check can fail here: with the CSP off, inline script runs.
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'alert(\"probe\")'; document.body.appendChild(s); }"
        )
        assert site.dialogs == ["probe"]
        site.dialogs.clear()
        now = int(time.time() * 1000)
        for n, evil in enumerate(EVIL):
            body = {"callId": f"evil-{n}", "direction": 2, "startTime": now - 5000 + n,
                    "answered": True, "answerTime": now - 4000, "endTime": now - 1000,
                    "agentName": evil, "agentNickName": evil, "hangupReason": evil,
                    "intent": evil, "taskId": evil, "recordUrl": "javascript:alert(1)"}  # fmt: skip
            assert site.push(body).status_code == 200
        assert site.push({"callId": EVIL[0], "startTime": EVIL[1]}).status_code == 422
        # The calls page already open adds them as live rows (inserted by app.js).
        page.wait_for_selector("#calls tr[data-id='evil-1']", timeout=20_000)
        _no_markup_from_data(page, EVIL, "live rows")
        rows = page.locator("#calls tbody tr.new")
        for column in (5, 8, 9):  # agent (nickname), hangup reason, intent
            assert set(rows.locator(f"td:nth-child({column})").all_inner_texts()) == set(EVIL)
        pages = ["/calls?direction=2", "/?range=today&direction=2", "/?range=today", "/quarantine"]
        for path in pages:
            page.goto(site.url(path))
            page.eval_on_selector_all("main details", "ds => ds.forEach(d => { d.open = true; })")
            _no_markup_from_data(page, EVIL, path)
        page.goto(site.url("/?range=today&direction=2"))
        for list_id in ("reasons", "aicc-tasks", "aicc-intents"):
            assert set(EVIL) <= set(page.locator(f"#{list_id} .name").all_inner_texts()), list_id
        assert set(EVIL) <= set(page.locator("#agents tbody td:first-child").all_inner_texts())
        site.shot("overview-hostile")
        for n, evil in enumerate(EVIL):
            page.goto(site.url(f"/calls/evil-{n}"))
            _no_markup_from_data(page, (evil,), f"call {n}")
            for field in ("agentNickName", "hangupReason", "intent"):
                assert page.inner_text(f"#fields tr[data-field={field}] td") == evil, field
            assert page.locator("#recording").count() == 0  # not an http(s) URL: no player
        site.shot("call-hostile")
        assert site.dialogs == []
    finally:
        context.close()


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
    page.wait_for_selector("a[href='/call?id=live-1']", timeout=20_000)
    assert page.evaluate("window.__sameDocument") is True  # the page itself never reloaded
    assert page.is_visible("#live-note")
    page.goto(site.url("/?range=today"))
    before = int(_kpis(page)["calls"])
    page.evaluate("window.__sameDocument = true")
    assert (
        site.push(
            {"callId": "live-2", "direction": 0, "startTime": int(time.time() * 1000)}
        ).status_code
        == 200
    )
    deadline = time.monotonic() + 20  # (wait_for_function evaluates a string: the CSP says no)
    while _kpis(page)["calls"] != str(before + 1) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _kpis(page)["calls"] == str(before + 1)
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


def _destination_rows(page: Any) -> dict[str, dict[str, str]]:
    """The Destinations table as the browser shows it: cells by column, spaces collapsed."""
    rows = {}
    for row in page.query_selector_all("#destinations tbody tr"):
        cells = {
            td.get_attribute("data-col"): " ".join(td.inner_text().split())
            for td in row.query_selector_all("td")
        }
        cells["lag_seconds"] = row.query_selector("td[data-col=lag]").get_attribute("data-seconds")
        rows[cells["name"]] = cells
    return rows


def _same_as_api(page: Any, site: Site) -> None:
    """Every row of the Destinations page equals GET /api/destinations."""
    shown = _destination_rows(page)
    api = {d["name"]: d for d in site.api("/api/destinations")["items"]}
    assert set(shown) == set(api)
    for name, item in api.items():
        expected = destination_cells(item, ZoneInfo(ZONE))
        cells = {k: v for k, v in shown[name].items() if k != "lag_seconds"}
        if item["lag_seconds"]:  # a paused destination's lag grows while we look
            assert abs(float(shown[name]["lag_seconds"]) - item["lag_seconds"]) < 5, name
            del expected["lag"], cells["lag"]
        assert cells == expected, name


def test_destinations_show_the_apis_figures_and_act(
    browser: Any, serve: Callable[..., Server], store: Store
) -> None:
    """The Destinations pages in a real browser: the same figures as the API before and
    after retrying dead letters and resuming, a hostile call id and answer shown as text, and
    no console error or CSP violation on any page (a probe shows both checks can fail)."""
    users.create(store, "ann", "admin", PASSWORD)
    with receiving() as good, receiving() as down:
        down.answer = lambda n, body: (503, {})
        down.body = EVIL[1].encode()
        destinations.add(store, "ok", good.url)
        destinations.add(store, "down", down.url)
        destinations.add(store, "held", good.url)
        destinations.set_state(store, "held", "paused", "paused by an operator")
        server = serve(CDRHUB_TIMEZONE=ZONE, CDRHUB_FORWARD_RETRY_SCHEDULE="50ms,100ms")
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        context.add_init_script(
            "window.__csp = []; document.addEventListener('securitypolicyviolation',"
            " e => window.__csp.push(e.violatedDirective));"
        )
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            site = Site(server, store, page, create_key(store, "fw")[1], "destinations")
            for call_id in ("fw-1", EVIL[0]):
                assert site.push({"callId": call_id, "direction": 0}).status_code == 200
            good.wait_for(2)
            deadline = time.monotonic() + 20
            while len(site.api("/api/destinations/down/dead-letters")["items"]) < 2:
                assert time.monotonic() < deadline, "no dead letters"
                time.sleep(0.1)
            site.sign_in()
            page.goto(site.url("/destinations"))
            page.evaluate(
                "() => { const s = document.createElement('script');"
                " s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }"
            )
            assert page.evaluate("window.__csp") == ["script-src-elem"]
            assert page.evaluate("window.__ran") is None
            assert any("Content Security Policy" in e for e in errors), errors
            errors.clear()

            checked: list[str] = []

            def clean(where: str) -> None:
                assert page.evaluate("window.__csp") == [], where
                assert errors == [], (where, errors)
                assert site.dialogs == [], where
                checked.append(where)

            page.goto(site.url("/destinations"))
            _same_as_api(page, site)
            assert _destination_rows(page)["down"]["dead"] == "2"
            clean("list")
            site.shot("destinations")
            page.click("#destinations a[href='/destinations/down']")
            page.wait_for_load_state()
            attempts = site.api("/api/destinations/down/attempts")["items"]
            assert page.locator("#attempts tbody tr").count() == len(attempts) == 6
            answers = page.locator("#attempts tbody td:nth-child(7)").all_inner_texts()
            assert set(answers) == {EVIL[1]}  # the destination's answer, as text
            dead = site.api("/api/destinations/down/dead-letters")["items"]
            assert page.locator("#dead-letters tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.event)"
            ) == [d["event_id"] for d in dead]
            call_ids = page.locator("#dead-letters tbody td:nth-child(3)").all_inner_texts()
            assert call_ids == [d["call_id"] for d in dead] and EVIL[0] in call_ids
            assert page.locator("main script").count() == 0
            assert page.inner_text("#status tr[data-field=dead] td") == "2"
            clean("down")
            site.shot("destination")

            down.answer = lambda n, body: (200, {})
            page.click("#retry-dead")
            page.wait_for_load_state()
            assert page.inner_text("#done") == "Dead letters queued again: 2"
            down.wait_for(2)
            deadline = time.monotonic() + 20
            while site.api("/api/destinations/down")["last_success_at_ms"] is None:
                assert time.monotonic() < deadline, "retried letters not recorded"
                time.sleep(0.1)
            page.reload()
            assert page.locator("#done").count() == 0  # said once
            assert page.inner_text("#status tr[data-field=dead] td") == "0"
            assert page.locator("#no-dead-letters").count() == 1
            clean("down after retry")

            page.goto(site.url("/destinations/held"))
            page.click("#resume")
            page.wait_for_load_state()
            assert "Resumed" in page.inner_text("#done")
            good.wait_for(4)
            today = datetime.now(ZoneInfo(ZONE)).date().isoformat()
            page.fill("#replay-form input[name=from]", today)
            page.fill("#replay-form input[name=to]", today)
            page.click("#replay")
            page.wait_for_load_state()
            assert page.inner_text("#done") == f"Events queued again: 2 ({today} – {today})"
            good.wait_for(6)
            clean("held")
            deadline = time.monotonic() + 20
            while any(d["waiting"] for d in site.api("/api/destinations")["items"]):
                assert time.monotonic() < deadline, "still waiting"
                time.sleep(0.1)
            page.goto(site.url("/destinations"))
            _same_as_api(page, site)
            clean("list after")
            page.click("#lang-zh-CN")
            page.wait_for_load_state()
            assert "转发目标" in page.inner_text("header nav") and "死信" in page.inner_text("main")
            clean("list in Chinese")
            site.shot("destinations-zh")
            assert len(checked) == 6
        finally:
            context.close()
