"""The overview's charts and layout in a real Chromium on a real server.

The charts are uPlot canvases (static/js/charts.js) drawn from JSON data islands; these tests
read the islands, the canvas and the tooltip a person hovers, and prove each against
``/api/stats``. Layout is checked at the widths people use (1280, 1366, 1920 and a 390 px
phone): no label clipped or wrapped, long labels shortened with the full text on hover.
Screenshots land in ``test-output/screenshots/charts-*.png`` for a person to look at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cdrhub.auth import users
from cdrhub.auth.apikeys import create_key
from cdrhub.store import Store
from cdrhub.web.routes import percent
from tests.helpers import Server
from tests.web.test_dashboard import EVIL, PASSWORD, SHOTS, ZONE, Site, _period

LONG_AGENT = "maximilian.alexander.featherstonehaugh-smythe@very-long-subsidiary.example.com"
WIDTHS = ((1280, 900), (1366, 768), (1920, 1080), (390, 844))


def _watch(page: Any) -> list[str]:
    """Console errors and CSP violations of the page from now on (Chromium reports a refused
    inline style or script as a console error; the listener catches the event itself)."""
    problems: list[str] = []

    def console(message: Any) -> None:
        # /favicon.ico is a known 404 of its own (the polish change ships one), not the charts'.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            problems.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    return problems


def _island(page: Any, chart: str) -> dict[str, Any]:
    return json.loads(page.text_content(f"#{chart}-data"))


def _drawn(page: Any, chart: str) -> dict[str, Any]:
    """What charts.js drew into the chart: canvas size, axis labels, the target line's y."""
    page.wait_for_selector(f"#{chart} .plot[data-drawn]")
    return page.eval_on_selector(
        f"#{chart} .plot",
        """el => { const c = el.querySelector('canvas'); return {
            width: c.width, height: c.height,
            x: JSON.parse(el.dataset.xTicks), y: JSON.parse(el.dataset.yTicks),
            targetY: el.dataset.targetY === undefined ? null : Number(el.dataset.targetY),
            clipped: Number(el.dataset.clipped),
            legend: Array.from(el.querySelectorAll('.u-legend .u-series th'))
                .map(th => th.textContent.trim()).filter(Boolean)}; }""",
    )


def _hover(page: Any, chart: str, index: int) -> str:
    """Move the mouse over bucket ``index`` and return the tooltip's lines."""
    x = page.eval_on_selector(
        f"#{chart} .plot",
        f"el => {{ const u = el.cdrhubChart; const r = u.over.getBoundingClientRect();"
        f" return [r.left + u.valToPos(u.data[0][{index}], 'x'), r.top + r.height / 2]; }}",
    )
    page.mouse.move(x[0], x[1])
    tip = page.locator(f"#{chart} .chart-tip")
    tip.wait_for(state="visible")
    return tip.inner_text()


def _table(page: Any, chart: str) -> dict[str, list[str]]:
    return {
        row.get_attribute("data-key"): [td.text_content() for td in row.query_selector_all("td")]
        for row in page.query_selector_all(f"#{chart} table.numbers tbody tr")
    }


def test_the_charts_draw_the_apis_figures_with_axes_target_and_tooltips(site: Site) -> None:
    page = site.page
    problems = _watch(page)
    site.sign_in()
    for period, days, unit in (("today", 1, "hour"), ("30d", 30, "day")):
        page.goto(site.url(f"/?range={period}"))
        start, end = _period(days)
        bounds = {"from": start.isoformat(), "to": end.isoformat()}
        per = {g["key"][unit]: g for g in site.api("/api/stats", group_by=unit, **bounds)["groups"]}
        volume = _island(page, "volume")
        assert len(volume["keys"]) == (24 if unit == "hour" else days)
        answered, unanswered, abandoned = (s["values"] for s in volume["series"])
        for i, key in enumerate(volume["keys"]):
            g = per.get(key, {"calls": 0, "answered": 0, "abandoned": 0})
            assert (answered[i], unanswered[i], abandoned[i]) == (
                g["answered"], g["calls"] - g["answered"] - g["abandoned"], g["abandoned"]
            ), key  # fmt: skip
        # The same figures as text, for screen readers and a browser without JavaScript.
        table = _table(page, "volume")
        assert list(table) == volume["keys"]
        for key, cells in table.items():
            assert cells[1] == str(per.get(key, {"calls": 0})["calls"]), key
        service = _island(page, "service")
        assert service["target"] == 0.8
        for key, level in zip(service["keys"], service["series"][0]["values"], strict=True):
            assert level == per.get(key, {"service_level": None})["service_level"], key
        for key, cells in _table(page, "service").items():
            assert cells[1] == percent(per.get(key, {"service_level": None})["service_level"])

        drawn = _drawn(page, "volume")
        assert drawn["width"] > 600 and drawn["height"] >= 150
        assert drawn["legend"] == ["Answered", "Unanswered", "Abandoned"]
        assert len(drawn["x"]) >= 4 and all(drawn["x"]), drawn["x"]
        if unit == "hour":  # ticks are the call center's clock, not UTC or the browser's
            assert all(len(t) == 5 and t[2] == ":" for t in drawn["x"]), drawn["x"]
            assert "08:00" in drawn["x"] or "06:00" in drawn["x"] or "12:00" in drawn["x"]
        assert drawn["y"][0] == "0" and len([t for t in drawn["y"] if t]) >= 3
        line = _drawn(page, "service")
        assert line["y"][0] == "0%" and line["y"][-1] == "100%"
        assert line["targetY"] is not None
        # The target line is on the canvas: the dashed dark line's pixels at its height.
        dark = page.eval_on_selector(
            "#service .plot",
            """el => { const u = el.cdrhubChart, c = el.querySelector('canvas');
                const ctx = c.getContext('2d'), d = window.devicePixelRatio || 1;
                const y = Math.round(u.valToPos(0.8, 'y', true));
                const row = ctx.getImageData(u.bbox.left, y - 1, u.bbox.width, 3).data;
                let n = 0; for (let i = 0; i < row.length; i += 4)
                    if (row[i] < 60 && row[i+1] < 70 && row[i+2] < 80 && row[i+3] > 200) n++;
                return n; }""",
        )
        assert dark > 50, dark

        busiest = max(range(len(volume["keys"])), key=lambda i: answered[i] + unanswered[i])
        key = volume["keys"][busiest]
        g = per[key]
        tip = _hover(page, "volume", busiest)
        lines = tip.splitlines()
        # A human time in the call center's zone, not an ISO key.
        at = datetime.fromisoformat(key) if unit == "hour" else datetime.fromisoformat(key)
        human = f"{at:%a}, {at:%b} {at.day}, {at.year}"
        if unit == "hour":
            human += f", {at:%H}:00–{(at + timedelta(hours=1)):%H}:00"
        assert lines[0] == human, tip
        assert f"Answered: {g['answered']:,}" in lines, tip
        assert f"Abandoned: {g['abandoned']:,}" in lines, tip
        assert f"Total: {g['calls']:,}" in lines, tip
        # The legend toggles a series: answered calls leave the tooltip and the stack.
        page.locator("#volume .u-legend .u-series").filter(has_text="Answered").first.click()
        tip = _hover(page, "volume", busiest)
        assert "Answered:" not in tip and f"Total: {g['calls'] - g['answered']:,}" in tip, tip
        site.shot(f"charts-{period}")
    assert problems == []


def test_one_busy_day_clips_the_scale_and_the_tooltip_keeps_the_true_figure(
    browser: Any, serve: Callable[..., Server], store: Store
) -> None:
    users.create(store, "ann", "admin", PASSWORD)
    server = serve(CDRHUB_TIMEZONE=ZONE)
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    try:
        site = Site(server, store, context.new_page(), create_key(store, "clip")[1], "clip")
        problems = _watch(site.page)
        zone = ZoneInfo(ZONE)
        noon = datetime.now(zone).replace(hour=12, minute=0, second=0, microsecond=0)
        n = 0
        for days_ago, count in ((5, 3), (4, 4), (3, 2), (2, 120)):
            at = int((noon - timedelta(days=days_ago)).timestamp() * 1000)
            for i in range(count):
                n += 1
                body = {"callId": f"clip-{n}", "direction": 0, "startTime": at + i * 1000,
                        "answered": True, "answerTime": at + i * 1000 + 3000,
                        "endTime": at + i * 1000 + 60_000}  # fmt: skip
                assert site.push(body).status_code == 200
        site.sign_in()
        page = site.page
        page.goto(site.url("/?range=7d"))
        drawn = _drawn(page, "volume")
        assert drawn["clipped"] == 1
        note = page.locator("#volume .chart-note")
        assert note.is_visible() and "cut off" in note.inner_text()
        assert max(int(t.replace(",", "")) for t in drawn["y"] if t) < 120  # the axis is clipped
        busy = _island(page, "volume")["keys"].index((noon - timedelta(days=2)).date().isoformat())
        assert "Answered: 120" in _hover(page, "volume", busy).splitlines()
        site.shot("charts-clipped")
        assert problems == []
    finally:
        context.close()


def _layout_problems(page: Any) -> list[str]:
    """Labels that are clipped or wrapped: fixed labels must fit (scrollWidth <= clientWidth)
    and stay on one line; long labels must be one line, ellipsised, with the full text in
    their title."""
    return page.evaluate(
        """() => {
        const out = [];
        const oneLine = el => {  // the text's own line boxes: one line has one top
            const r = document.createRange(); r.selectNodeContents(el);
            const cs = getComputedStyle(el);
            const lh = parseFloat(cs.lineHeight) || parseFloat(cs.fontSize) * 1.45;
            const tops = Array.from(r.getClientRects()).map(q => q.top).sort((a, b) => a - b);
            let lines = 0, last = -1e9;  // inline pieces of one line (a <small>) start lower
            for (const t of tops) if (t - last > lh * 0.7) { lines++; last = t; }
            return lines <= 1; };
        for (const el of document.querySelectorAll(
                '.kpi span, .kpi b, .kpi small, #agents th, main figcaption, .u-legend th')) {
            if (el.scrollWidth > el.clientWidth + 1) out.push('clipped: ' + el.textContent);
            if (!oneLine(el)) out.push('wrapped: ' + el.textContent);
        }
        for (const el of document.querySelectorAll('.hbars .name, #agents td.name a')) {
            if (!oneLine(el)) out.push('wrapped: ' + el.textContent);
            const full = el.getAttribute('title') || '', shown = el.textContent;
            const [head, tail] = shown.split('\u2026');  // an id shortened in the middle
            const middle = tail !== undefined && full.startsWith(head) && full.endsWith(tail);
            if (full !== shown && !middle) out.push('no title: ' + shown);
        }
        if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('page scrolls');
        return out; }"""
    )


def test_the_overview_fits_at_1280_1366_1920_and_a_phone(site: Site) -> None:
    now = int(time.time() * 1000)
    for n in range(80):  # the busiest agent, so the top-agents table lists the long address
        body = {"callId": f"long-{n}", "direction": 0, "startTime": now - 600_000 + n,
                "answered": True, "answerTime": now - 590_000, "endTime": now - 300_000,
                "agentName": LONG_AGENT, "taskId": "task-" + "x" * 60}  # fmt: skip
        assert site.push(body).status_code == 200
    page = site.page
    problems = _watch(page)
    site.sign_in()
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        for period in ("today", "30d"):
            page.goto(site.url(f"/?range={period}"))
            _drawn(page, "volume")
            assert _layout_problems(page) == [], (width, period)
        names = page.locator("#agents td.name a").all_inner_texts()
        assert LONG_AGENT in names
        cell = page.locator("#agents td.name a", has_text=LONG_AGENT)
        assert cell.get_attribute("title") == LONG_AGENT
        # Two columns from 900 px up (the volume chart across both), one on a phone.
        boxes = {
            name: page.locator(sel).bounding_box()
            for name, sel in (
                ("volume", "#volume"),
                ("service", "#service"),
                ("reasons", "figure:has(#reasons)"),
            )
        }
        side_by_side = abs(boxes["service"]["y"] - boxes["reasons"]["y"]) < 2
        assert side_by_side == (width >= 900), width
        if width >= 900:
            assert boxes["volume"]["width"] > boxes["service"]["width"] * 1.8
        page.screenshot(path=str(SHOTS / f"charts-overview-{width}.png"), full_page=True)
    assert problems == []


@pytest.fixture
def hostile(browser: Any, serve: Callable[..., Server], store: Store) -> Iterator[Site]:
    users.create(store, "ann", "admin", PASSWORD)
    server = serve(CDRHUB_TIMEZONE=ZONE)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1366, "height": 900})
    try:
        yield Site(server, store, context.new_page(), create_key(store, "xss")[1], "xss")
    finally:
        context.close()


def test_hostile_labels_stay_text_in_titles_tooltips_and_data_islands(hostile: Site) -> None:
    """With the CSP off, so that markup that got through would run: the payloads are the
    titles' text, the islands are data that JSON.parse reads, and no dialog opens."""
    site = hostile
    now = int(time.time() * 1000)
    for n, evil in enumerate(EVIL):
        body = {"callId": f"evil-{n}", "direction": 2, "startTime": now - 5000 + n,
                "answered": True, "answerTime": now - 4000, "endTime": now - 1000,
                "agentName": evil, "hangupReason": evil, "intent": evil,
                "taskId": evil}  # fmt: skip
        assert site.push(body).status_code == 200
    site.sign_in()
    page = site.page
    page.goto(site.url("/?range=today&direction=2"))
    _drawn(page, "volume")
    for sel in ("#reasons .name", "#aicc-tasks .name", "#aicc-intents .name", "#agents td.name a"):
        titles = {el.get_attribute("title") for el in page.query_selector_all(sel)}
        assert set(EVIL) <= titles, sel
    hour = datetime.now(UTC).astimezone(ZoneInfo(ZONE)).replace(minute=0, second=0, microsecond=0)
    _hover(page, "volume", _island(page, "volume")["keys"].index(hour.isoformat("T", "minutes")))
    # Nothing executable came from the data: no element but the page's own scripts and islands.
    scripts = page.eval_on_selector_all(
        "script", "ss => ss.map(s => s.getAttribute('type') || s.getAttribute('src'))"
    )
    assert set(scripts) <= {
        "application/json", "/static/vendor/uplot/uPlot.iife.min.js", "/static/js/charts.js",
        "/static/app.js",
    }  # fmt: skip
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("[onerror]").count() == 0
    site.shot("charts-hostile")
    assert site.dialogs == []
