"""The web dashboard for the call-center team: sign-in, overview, calls, call detail, quarantine.

:func:`install` adds it to an app: signed session cookies, security headers (a CSP that allows
no inline script), the static files shipped in the package, and the pages of :mod:`.routes`.
"""

from __future__ import annotations

import html
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cdrhub.ingest import create_token_file, read_token_file
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.web.routes import PageError, SignInRequired, dashboard_router, make_pages
from cdrhub.web.wall import wall_router

#: No inline script or style, nothing from elsewhere but recordings (NXCC serves them).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' https: http:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
#: FastAPI's ReDoc page is an inline script loading from a CDN: the strict policy would blank
#: it, so it keeps FastAPI's behaviour (it shows no call data). /docs is Swagger UI from the
#: package (static/swagger-ui), under the strict policy like every page.
_API_BROWSER = ("/redoc",)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
#: Paths that are the dashboard's (timed with Server-Timing); the rest is API, health, pushes.
_NOT_DASHBOARD = ("/api/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/static/")


def session_secret(settings: Settings) -> str:
    """``CDRHUB_SESSION_SECRET``, or one generated on first start into ``data_dir``.

    Kept on disk so sessions survive restarts and are shared by ``--workers``.
    """
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = settings.session_key_file
    stored = read_token_file(path)
    if stored:
        return stored[0]
    # When several workers start at once, all use whichever file was created first.
    return create_token_file(path, [secrets.token_urlsafe(48)])[0]


class SecurityHeaders:
    """Adds the CSP and friends to every response that does not set its own, and a
    ``Server-Timing`` header to dashboard pages (what the overview's speed target measures)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = list(_HEADERS)
        if path not in _API_BROWSER:
            headers.append((b"content-security-policy", CSP.encode()))
        timed = not path.startswith(_NOT_DASHBOARD)
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in headers if k not in present]
                if timed:
                    spent = (time.perf_counter() - started) * 1000
                    extra.append((b"server-timing", f"app;dur={spent:.1f}".encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings, get_store: Callable[[], Store]) -> None:
    """Add the dashboard to ``app``."""
    app.add_middleware(SecurityHeaders)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie="cdrhub_session",
        max_age=12 * 3600,
        same_site="lax",
        https_only=settings.public_url.startswith("https://") if settings.public_url else False,
    )
    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        """Browsers ask every site for it; without it each page logs a 404."""
        return FileResponse(static / "favicon.ico", media_type="image/x-icon")

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """Swagger UI from the package's own copy: works without internet and under the CSP."""
        return HTMLResponse(_SWAGGER_PAGE.format(openapi=html.escape(app.openapi_url or "")))

    pages = make_pages(settings)
    app.include_router(dashboard_router(pages, settings, get_store))
    app.include_router(wall_router(pages, settings, get_store))

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_url, safe='/')}", status_code=303)

    @app.exception_handler(PageError)
    def page_error(request: Request, exc: PageError) -> Response:
        return pages.error(request, exc)

    # Installed after the app's JSON handlers (create_app's order), which stay for the rest.
    json_error = app.exception_handlers[StarletteHTTPException]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """A page for a person: a browser asking for an unknown dashboard address, or sending
        a form the wrong way, gets the dashboard's error page. Programs (no text/html in
        Accept) and API, health and push paths keep the documented JSON errors."""
        message = _PAGE_ERRORS.get(exc.status_code)
        browser = "text/html" in request.headers.get("accept", "")
        if message is None or not browser or not _is_page(request.scope["path"], app):
            return await json_error(request, exc)  # type: ignore[no-any-return]
        return await run_in_threadpool(pages.error, request, PageError(exc.status_code, message))


#: /docs: the vendored Swagger UI, started by an external script (no inline script).
_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cdrhub API</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
<script src="/static/swagger-ui/swagger-ui-bundle.js" defer></script>
<script src="/static/swagger-ui/init.js" defer></script>
</head>
<body><div id="swagger-ui" data-url="{openapi}"></div></body>
</html>
"""

#: The HTTP errors a dashboard path can meet, in words (i18n translates them).
_PAGE_ERRORS = {
    404: "There is no such page.",
    405: "This page cannot be opened that way.",
}


def _is_page(path: str, app: FastAPI) -> bool:
    """Whether ``path`` is the dashboard's: not the API, health, static files or a push."""
    pushes: frozenset[str] = getattr(app, "callback_paths", frozenset())
    return not path.startswith(_NOT_DASHBOARD) and path not in _API_BROWSER and path not in pushes
