"""The dashboard's pages: server-rendered, from the same queries and statistics as the API.

Every number on a page comes from :mod:`cdrhub.stats` and every list from :mod:`cdrhub.query`,
the functions ``/api/stats`` and ``/api/calls`` use, so the page and the API cannot disagree.
Templates autoescape everything: call data (agent names, intents, hangup reasons) comes from
the outside world. The only script is ``static/app.js``; the Content-Security-Policy forbids
any other.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from cdrhub import cdr, export, query, stats, users
from cdrhub.columns import Facts
from cdrhub.errors import InvalidParameter
from cdrhub.quarantine import replay, replay_all
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.web import charts, i18n

HERE = Path(__file__).parent
RANGES = ("today", "yesterday", "7d", "30d", "custom")
_FAILURES_ALLOWED = 5
_FAILURE_WINDOW = 60.0


class SignInRequired(Exception):
    """Raised by the session check; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def dashboard_router(settings: Settings, get_store: Callable[[], Store]) -> APIRouter:
    """Routes of the dashboard, on the app's store and the configured time zone."""
    router = APIRouter(include_in_schema=False)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(duration=duration, percent=percent)
    zone = ZoneInfo(settings.timezone)
    failures: dict[str, deque[float]] = defaultdict(deque)

    def page(request: Request, name: str, user: users.User | None, **context: Any) -> Response:
        language = i18n.choose(request.cookies.get("lang"), request.headers.get("accept-language"))
        return templates.TemplateResponse(
            request,
            name,
            {
                "user": user,
                "t": i18n.translator(language),
                "language": language,
                "languages": i18n.LANGUAGES,
                "zone": settings.timezone,
                "csrf": _csrf_token(request),
                **context,
            },
        )

    def current_user(request: Request) -> users.User:
        uid = request.session.get("uid")
        user = users.get(get_store(), uid) if isinstance(uid, int) else None
        if user is None:
            request.session.pop("uid", None)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise SignInRequired(target)
        return user

    def admin(request: Request) -> users.User:
        user = current_user(request)
        if user.role != "admin":
            raise HTTPException(403, "this page is for admins")
        return user

    # -- sign-in -------------------------------------------------------------------------------

    @router.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        return page(request, "login.html", None, next=_safe_next(next), error=None)

    @router.post("/login")
    def login(
        request: Request,
        name: str = Form(""),
        password: str = Form(""),
        csrf: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        _check_csrf(request, csrf)
        key = f"{name.strip().lower()}|{request.client.host if request.client else ''}"
        recent = failures[key]
        now = time.monotonic()
        while recent and recent[0] < now - _FAILURE_WINDOW:
            recent.popleft()
        if len(recent) >= _FAILURES_ALLOWED:
            error = "Too many attempts; wait a minute and try again."
            response = page(request, "login.html", None, next=_safe_next(next), error=error)
            response.status_code = 429
            response.headers["Retry-After"] = str(int(_FAILURE_WINDOW))
            return response
        user = users.authenticate(get_store(), name, password)
        if user is None:
            recent.append(now)
            response = page(
                request, "login.html", None, next=_safe_next(next), error="Wrong name or password."
            )
            response.status_code = 401
            return response
        recent.clear()
        request.session.clear()  # a new session on sign-in: no fixation
        request.session["uid"] = user.id
        request.session["csrf"] = secrets.token_urlsafe(24)
        return RedirectResponse(_safe_next(next), status_code=303)

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        _check_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @router.get("/lang/{code}")
    def switch_language(code: str, request: Request, next: str = "/") -> Response:
        response = RedirectResponse(_safe_next(next), status_code=303)
        if code in i18n.LANGUAGES:
            response.set_cookie("lang", code, max_age=365 * 86400, samesite="lax", httponly=True)
        return response

    # -- overview ------------------------------------------------------------------------------

    def overview_context(params: Mapping[str, str]) -> dict[str, Any]:
        chosen = params.get("range", "today")
        chosen = chosen if chosen in RANGES else "today"
        start, end = _range(chosen, params, zone)
        direction = params.get("direction", "")
        raw = {"from": start.isoformat(), "to": end.isoformat(), "direction": direction}
        where = query.parse_filters(raw, zone)
        names = ("agent", "task_id", "intent", "hangup_reason")
        facts = stats.select_facts(get_store(), where, names)
        unit = "hour" if end - start <= timedelta(days=2) else "day"

        def report(group_by: tuple[str, ...], subset: Facts | None = None) -> list[dict[str, Any]]:
            return stats.aggregate(
                subset if subset is not None else facts,
                group_by,
                tz=zone,
                sl_seconds=settings.service_level_seconds,
                short_abandon_seconds=settings.short_abandon_seconds,
            )

        total = report(())[0]
        over_time = report((unit,))
        agents = sorted(
            (g for g in report(("agent",)) if g["key"]["agent"] is not None),
            key=lambda g: (-g["answered"], -g["calls"]),
        )[:10]
        aicc = _only(facts, facts.arrays["direction"] == 2)
        return {
            "range": chosen,
            "ranges": RANGES,
            "start": start,
            "end": end,
            "direction": direction,
            "total": total,
            "volume": charts.volume(over_time, unit),
            "service": charts.service_level(over_time, unit),
            "reasons": charts.bars(
                [(g["key"]["hangup_reason"], g["calls"]) for g in report(("hangup_reason",))]
            ),
            "agents": agents,
            "aicc": sorted(report(("task_id", "intent"), aicc), key=lambda g: -g["calls"])[:15],
            "live": end > datetime.now(UTC),
            "query": urlencode({k: v for k, v in params.items() if k in _OVERVIEW_PARAMS}),
            "api_query": urlencode({k: v for k, v in raw.items() if v}),
        }

    @router.get("/")
    def overview(request: Request) -> Response:
        user = current_user(request)
        return page(request, "overview.html", user, **overview_context(request.query_params))

    @router.get("/overview/live")
    def overview_live(request: Request) -> Response:
        user = current_user(request)
        context = overview_context(request.query_params)
        return page(request, "_overview_body.html", user, **context)

    # -- calls ---------------------------------------------------------------------------------

    def call_filter(params: Mapping[str, str]) -> query.CallFilter:
        raw = {k: v for k, v in params.items() if k in query.FILTER_NAMES}
        number = params.get("number", "").strip()
        if number:
            raw["caller_prefix"] = number
        return query.parse_filters(raw, zone)

    @router.get("/calls")
    def calls_page(request: Request) -> Response:
        user = current_user(request)
        params = dict(request.query_params)
        error = None
        try:
            where = call_filter(params)
            listing = query.list_calls(
                get_store(), where, zone, limit=50, cursor=params.get("cursor") or None
            )
        except InvalidParameter as exc:
            error, listing = exc.detail, query.Page([], None)
        kept = {k: v for k, v in params.items() if k != "cursor" and v}
        return page(
            request,
            "calls.html",
            user,
            params=params,
            calls=[_row(item) for item in listing.items],
            error=error,
            next_url="/calls?" + urlencode({**kept, "cursor": listing.next_cursor})
            if listing.next_cursor
            else None,
            export_url="/calls/export?" + urlencode(kept),
            rows_url="/calls/rows?" + urlencode(kept),
            directions=cdr.DIRECTIONS,
        )

    @router.get("/calls/rows")
    def calls_rows(request: Request, since_ms: int = 0) -> Response:
        """Rows of calls newer than ``since_ms`` (the newest on the page), for live updates."""
        user = current_user(request)
        params = dict(request.query_params)
        where = call_filter(params)
        if since_ms and (where.start is None or where.start.timestamp() * 1000 <= since_ms):
            newer = datetime.fromtimestamp((since_ms + 1) / 1000, UTC)
            where = query.CallFilter(newer, where.end, where.values)
        listing = query.list_calls(get_store(), where, zone, limit=50)
        return page(request, "_rows.html", user, calls=[_row(i) for i in listing.items])

    @router.get("/calls/export")
    def calls_export(request: Request) -> Response:
        current_user(request)  # signed in, or redirected to the sign-in page
        where = call_filter(dict(request.query_params))
        chunks = export.export(query.iter_calls(get_store(), where), "csv", zone)
        stamp = datetime.now(zone).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            chunks,
            media_type=export.MEDIA_TYPES["csv"],
            headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'},
        )

    @router.get("/calls/{call_id}")
    def call_page(call_id: str, request: Request) -> Response:
        user = current_user(request)
        found = query.get_call(get_store(), call_id)
        if found is None:
            raise HTTPException(404, "no such call")
        row, versions = found
        item = query.to_item(row, zone)
        derived = stats.derived_fields(row, settings.short_abandon_seconds)
        return page(
            request,
            "call.html",
            user,
            call=item,
            derived=derived,
            fields=[(f.name, f.doc, _shown(f, item)) for f in cdr.FIELDS],
            timeline=_timeline(item),
            recording=_playable(item.get("record_url")),
            voicemail=_playable(item.get("leave_msg_url")),
            versions=[
                {
                    **query.raw_version_item(v, zone),
                    "pretty": json.dumps(
                        query.raw_version_item(v, zone)["body"], ensure_ascii=False, indent=2
                    ),
                }
                for v in versions
            ],
        )

    # -- quarantine ----------------------------------------------------------------------------

    @router.get("/quarantine")
    def quarantine_page(request: Request) -> Response:
        user = admin(request)
        entries = get_store().quarantined(limit=200)
        return page(request, "quarantine.html", user, entries=entries, message=None)

    @router.post("/quarantine/replay")
    def quarantine_replay(
        request: Request,
        csrf: str = Form(""),
        entry: int | None = Form(None),
    ) -> Response:
        user = admin(request)
        _check_csrf(request, csrf)
        store = get_store()
        results = [replay(store, entry)] if entry is not None else replay_all(store)
        stored = sum(r.stored for r in results)
        message = f"{stored} / {len(results)}"
        entries = store.quarantined(limit=200)
        return page(request, "quarantine.html", user, entries=entries, message=message)

    return router


_OVERVIEW_PARAMS = ("range", "from", "to", "direction")


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to someone else's."""
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def _check_csrf(request: Request, presented: str) -> None:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(presented, expected):
        raise HTTPException(403, "the form expired or came from another site; reload the page")


def _range(chosen: str, params: Mapping[str, str], zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The chosen period as local-midnight bounds ``[start, end)``."""
    today = datetime.now(zone).date()

    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=zone)

    if chosen == "custom":
        try:
            first = date.fromisoformat(params.get("from", ""))
            last = date.fromisoformat(params.get("to", ""))
        except ValueError:
            first = last = today
        return midnight(first), midnight(max(first, last) + timedelta(days=1))
    days = {"today": (0, 1), "yesterday": (-1, 0), "7d": (-6, 1), "30d": (-29, 1)}[chosen]
    return midnight(today + timedelta(days=days[0])), midnight(today + timedelta(days=days[1]))


def _only(facts: Facts, keep: np.ndarray) -> Facts:
    return Facts({name: array[keep] for name, array in facts.arrays.items()}, facts.words)


def _row(item: dict[str, Any]) -> dict[str, Any]:
    talk = None
    if item.get("answered") and item.get("answer_time_ms") and item.get("end_time_ms"):
        talk = (item["end_time_ms"] - item["answer_time_ms"]) / 1000
    return {**item, "talk": talk, "direction_name": cdr.DIRECTIONS.get(item.get("direction"))}


def _shown(field: cdr.Field, item: dict[str, Any]) -> Any:
    value = item.get(field.column)
    if field.name == "direction":
        return f"{value} ({cdr.DIRECTIONS.get(value, '?')})" if value is not None else None
    if field.name == "hangupBy":
        return f"{value} ({cdr.HANGUP_BY.get(value, '?')})" if value is not None else None
    return value


def _timeline(item: dict[str, Any]) -> list[tuple[str, str]]:
    steps = [
        ("Start", "start_time"),
        ("Ring", "ring_time"),
        ("Queue in", "in_queue_time"),
        ("Queue out", "out_queue_time"),
        ("Answer", "answer_time"),
        ("End", "end_time"),
    ]
    found = [(label, item[col], item[f"{col}_ms"]) for label, col in steps if item.get(col)]
    return [(label, text) for label, text, _ in sorted(found, key=lambda s: s[2])]


def _playable(url: Any) -> str | None:
    """A recording URL the page may put in an <audio> element: http(s) only."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None


def duration(seconds: float | None) -> str:
    """``83`` to ``1m 23s``."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"
