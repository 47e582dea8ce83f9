"""Page fixes seen by a new user, in real Chromium: offline /docs, the favicon, the call page
(timeline, field order, cost precision, the way back, the vendor's own example) and Chinese
durations and hangup reasons."""

from __future__ import annotations

from typing import Any

from tests.web.test_dashboard import Site, browser, site  # the fixtures, shared

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
