"""The Reports pages in a real browser (Playwright, the system Chromium) on a real server in
a zone with DST: the table equals the API on the 25-hour day, the agent report's hostile
name stays text, a row click opens that agent's calls, sorting works, and no console error
or CSP violation happens on any of the three pages. Screenshots: test-output/screenshots/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cdrhub.auth import users
from cdrhub.auth.apikeys import create_key
from cdrhub.store import Store
from tests.helpers import Server
from tests.helpers.calls import call
from tests.reports.test_planning import DATA
from tests.web.test_dashboard import EVIL, PASSWORD, Site, _write, browser  # noqa: F401

NY = "America/New_York"
DAY = {"from": "2026-11-01", "to": "2026-11-01"}


@pytest.fixture
def reports_site(
    browser: Any,  # noqa: F811
    serve: Callable[..., Server],
    store: Store,
    store_url: str,
) -> Iterator[tuple[Site, list[str]]]:
    hostile = [
        call(f"X{i}", "2026-11-01T16:00:00", in_queue=0, answer=5 + i, end=60, answered=True,
             direction=0, agentName=name)
        for i, name in enumerate(EVIL)
    ]  # fmt: skip
    _write(store, [*DATA, *hostile])
    users.create(store, "vic", "viewer", PASSWORD)
    key = create_key(store, "reports tests")[1]
    server = serve(CDRHUB_TIMEZONE=NY)
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    context.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective));"
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: _console(m, errors))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        yield Site(server, store, page, key, store_url.split(":")[0]), errors
    finally:
        context.close()


def _console(message: Any, errors: list[str]) -> None:
    """Console errors, but the favicon's 404 (the polish branch adds /favicon.ico; until it is
    merged Chromium asks for it on every page, and that is not this page's doing)."""
    where = (message.location or {}).get("url", "")
    if message.type == "error" and not where.endswith("/favicon.ico"):
        errors.append(f"{message.text} at {where}")


def _column(page: Any, name: str) -> list[str]:
    return page.eval_on_selector_all(
        f'#report td[data-col="{name}"]', "tds => tds.map(td => td.dataset.value)"
    )


def _api_rows(site: Site, kind: str) -> list[dict[str, Any]]:
    source = site.page.get_attribute("#report", "data-api")
    path, _, query = source.partition("?")
    from urllib.parse import parse_qsl

    body = site.api(path, **dict(parse_qsl(query)))
    return body["agents"] if kind == "agents" else body["intervals"]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def test_reports_pages_equal_the_api_in_a_browser(reports_site: tuple[Site, list[str]]) -> None:
    site, errors = reports_site
    page = site.page
    site.sign_in("vic")  # a viewer
    page.click("#nav-reports")
    page.wait_for_load_state()
    assert "/reports/intervals" in page.url
    page.fill("input[name=from]", "2026-11-01")
    page.fill("input[name=to]", "2026-11-01")
    page.click("#show")
    page.wait_for_load_state()
    rows = _api_rows(site, "intervals")
    assert len(rows) == 50  # the day clocks went back: 25 hours of half hours
    for name in ("start", "offered", "answered", "abandoned", "service_level", "asa_seconds",
                 "aht_seconds", "longest_wait_seconds"):  # fmt: skip
        assert _column(page, name) == [_text(r[name]) for r in rows], name
    shown = page.locator(
        '#report tr:has(td[data-col=start][data-value="2026-11-01T01:00-05:00"])'
    ).inner_text()
    assert "3" in shown and "0.0%" in shown  # 3 offered, none within 20 s
    site.shot("reports-intervals")

    page.click("#tab-staffing")
    page.wait_for_load_state()
    rows = _api_rows(site, "staffing")
    for name in ("agents_needed", "expected_service_level", "traffic_erlangs"):
        assert _column(page, name) == [_text(r[name]) for r in rows], name
    assert page.inner_text("#peak").endswith("within 20 s")
    site.shot("reports-staffing")

    page.click("#tab-agents")
    page.wait_for_load_state()
    rows = _api_rows(site, "agents")
    for name in ("agent", "handled", "answered", "missed", "answered_share", "first_call"):
        assert _column(page, name) == [_text(r[name]) for r in rows], name
    names = page.locator('#report td[data-col="agent"] a').all_inner_texts()
    assert set(EVIL) <= set(names)  # shown as the text it is
    assert page.evaluate("window.__xss") is None and site.dialogs == []
    site.shot("reports-agents")
    page.click("th a[data-sort=agent]")  # sorts by name, descending on the first click
    page.wait_for_load_state()
    ordered = _column(page, "agent")
    assert ordered == sorted(ordered, reverse=True)

    page.click('#report a.agent-calls:text-is("李雷")')
    page.wait_for_load_state()
    assert "/calls" in page.url and "agent=" in page.url
    listed = page.locator("table tbody tr").count()
    assert listed == 2  # R and S, the agent's two calls that day

    assert page.evaluate("window.__csp") == []
    assert errors == []
