"""``/wall``: the wallboard, a full-screen view for a TV on the call-center floor.

Open to any signed-in account (viewers included) or, with no account, to a wallboard link
(``/wall?link=cdrwall_...``, see :mod:`cdrhub.auth.wallboard`): a link opens this page and
its data, nothing else, and a revoked or unknown one gets 403. The page is rendered with the
figures (readable without JavaScript); ``static/wall.js`` then fetches ``/wall/data`` every
``refresh`` seconds and puts the new figures in place with ``textContent`` and SVG
attributes, so no data ever becomes markup and the CSP needs no inline script or style.
The figures are :func:`cdrhub.reports.wallboard.figures`, the ``/api/stats`` definitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cdrhub import alerts
from cdrhub.auth import users
from cdrhub.auth import wallboard as links
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.web.routes import PageError, Pages, SignInRequired, alert_view, here

THEMES = ("dark", "light")
#: Seconds between refreshes: default, and the bounds a ``refresh`` parameter is held to.
REFRESH_SECONDS, MIN_REFRESH, MAX_REFRESH = 10, 2, 300
_REVOKED = "This wallboard link is not valid or was revoked."


def wall_router(
    pages: Pages,
    settings: Settings,
    get_store: Callable[[], Store],
) -> APIRouter:
    """The wallboard's page and data, for a signed-in account or a wallboard link (after
    :func:`dashboard_router`, which sets ``pages.lookup``, the session check)."""
    router = APIRouter(include_in_schema=False)

    def viewer(request: Request, *, page: bool) -> tuple[users.User | None, str]:
        """The signed-in user (or None with a valid link) and the link token ("" if none)."""
        token = request.query_params.get("link", "")
        if token:
            if links.authenticate_link(get_store(), token) is None:
                if page:
                    raise PageError(403, _REVOKED)
                raise _Refused()
            return None, token
        user = pages.lookup(request) if pages.lookup else None
        if user is None:
            if page:
                raise SignInRequired(here(request))
            raise _Refused(401)
        return user, ""

    def data() -> dict[str, Any]:
        # Here, not with the pages: the figures load NumPy (15 MB), which a server that shows
        # no wallboard never needs.
        from cdrhub.reports import wallboard

        store = get_store()
        figures = wallboard.figures(
            store,
            tz=pages.zone,
            sl_seconds=settings.service_level_seconds,
            sl_target=settings.service_level_target,
            short_abandon_seconds=settings.short_abandon_seconds,
        )
        figures["alerts"] = active_alerts(store)
        return figures

    @router.get("/wall")
    def wall_page(request: Request) -> Response:
        user, token = viewer(request, page=True)
        theme = request.query_params.get("theme", "")
        figures = data()
        response = pages.render(
            request,
            "wall.html",
            user,
            wall=figures,
            bars=bars(figures["last_hour"]),
            theme=theme if theme in THEMES else "",
            refresh=_refresh(request.query_params.get("refresh", "")),
            data_url="/wall/data" + (f"?link={token}" if token else ""),
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the link never leaves in a Referer
        return response

    @router.get("/wall/data")
    def wall_data(request: Request) -> Response:
        """The figures as JSON (documented in docs/dashboard.md)."""
        try:
            viewer(request, page=False)
        except _Refused as refused:
            detail = (
                "sign in, or open the wallboard with a valid link"
                if refused.status == 401
                else _REVOKED
            )
            # The value presented is not echoed: it is (or is meant to be) a secret.
            problem = {"field": "link", "value": None, "expected": "an active wallboard link"}
            code = "unauthorized" if refused.status == 401 else "forbidden"
            return JSONResponse(
                {"error": code, "detail": detail, "fields": [problem]},
                status_code=refused.status,
                headers={"Cache-Control": "no-store"},
            )
        return JSONResponse(data(), headers={"Cache-Control": "no-store"})

    return router


class _Refused(Exception):
    def __init__(self, status: int = 403) -> None:
        self.status = status


def _refresh(text: str) -> int:
    """The refresh interval in seconds a ``refresh`` parameter asks for, held to the bounds."""
    try:
        return min(max(int(text), MIN_REFRESH), MAX_REFRESH)
    except ValueError:
        return REFRESH_SECONDS


#: The last hour's bar chart: viewBox units (the SVG scales to the screen).
CHART_WIDTH, CHART_HEIGHT, BAR_WIDTH = 400, 100, 80


def bars(quarters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each quarter's bar (its ``calls``) as SVG geometry, tallest = full height; ``wall.js``
    computes the same when new figures arrive."""
    top = max((q["calls"] for q in quarters), default=0) or 1
    step = CHART_WIDTH / max(len(quarters), 1)
    shapes = []
    for i, quarter in enumerate(quarters):
        height = round(CHART_HEIGHT * quarter["calls"] / top, 2)
        shapes.append(
            {
                "x": round(i * step + (step - BAR_WIDTH) / 2, 2),
                "y": round(CHART_HEIGHT - height, 2),
                "height": height,
                "label": quarter["from"][11:16],
                "calls": quarter["calls"],
            }
        )
    return shapes


def active_alerts(store: Store) -> list[dict[str, Any]]:
    """The alert rules firing now (paused ones are not), as the wallboard lists them: the
    rule's name, its condition, the figure that made it fire and since when, and a one-line
    ``message`` that the page shows (as text) for the floor to read."""
    shown = []
    for rule in alerts.rules.all_rules(store):
        if rule.state != "active" or not rule.firing:
            continue
        view = alert_view(rule)
        shown.append(
            {
                "name": rule.name,
                "condition": view["condition"],
                "figure": view["figure"],
                "since_ms": rule.firing_since_ms,
                "message": f"{rule.name}: {view['condition']} ({view['figure']})",
            }
        )
    return shown
