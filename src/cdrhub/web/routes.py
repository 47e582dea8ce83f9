"""The dashboard's pages: server-rendered, from the same queries and statistics as the API.

The Destinations pages (admins) show forwarding from :mod:`cdrhub.forward`'s own functions,
the ones ``/api/destinations`` and ``cdrhub forward`` call.

Every number on a page comes from :mod:`cdrhub.stats` and every list from :mod:`cdrhub.query`,
the functions ``/api/stats`` and ``/api/calls`` use, so the page and the API cannot disagree.
Templates autoescape everything: call data (agent names, intents, hangup reasons) comes from
the outside world. The only script is ``static/app.js``; the Content-Security-Policy forbids
any other.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import ColumnElement, func, or_, select

from cdrhub import alerts, cdr, forward
from cdrhub.auth import users
from cdrhub.errors import InvalidParameter
from cdrhub.ingest import ReplayResult, client_address, networks, replay, replay_all
from cdrhub.reports import call_id_path, callfacts, export, query, rollup, zones
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import calls as calls_table
from cdrhub.web import charts, i18n
from cdrhub.web.reports import report_routes
from cdrhub.web.throttle import Busy, Throttle

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
RANGES = ("today", "yesterday", "7d", "30d", "custom")
_TOO_MANY = "Too many attempts; wait a minute and try again."
_BAD_DATES = "The period's dates are not days of the calendar (YYYY-MM-DD)."
#: The longest overview period (about ten years: 120 months on the charts).
MAX_PERIOD_DAYS = 3653
#: Rows per page of the calls table.
PAGE_SIZE = 50
#: How far before a poll's mark a live row may have started: NXCC pushes a call when it ends,
#: so a call that arrives now may have started long before the calls already on the page.
_LIVE_LOOKBACK = timedelta(days=1)
#: How far a live poll looks back before its mark (see ``calls_rows``).
_LIVE_OVERLAP = timedelta(seconds=5)


class SignInRequired(Exception):
    """Raised by the session check; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageError(Exception):
    """A dashboard request that cannot be served: shown as a page in the reader's language
    (the API's JSON errors are for programs)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Pages:
    """Renders the dashboard's templates with what every page needs (user, language, zone)."""

    settings: Settings
    templates: Jinja2Templates
    zone: ZoneInfo
    #: Finds the signed-in user for an error page (set by :func:`dashboard_router`).
    lookup: Callable[[Request], users.User | None] | None = None
    #: Names of the alert rules firing now, for the header (set by :func:`dashboard_router`).
    firing: Callable[[], list[str]] | None = None

    def render(
        self,
        request: Request,
        name: str,
        user: users.User | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        """Render ``name`` for ``request``; every value in ``context`` is autoescaped."""
        language = i18n.choose(request.cookies.get("lang"), request.headers.get("accept-language"))
        translate = i18n.translator(language)
        return self.templates.TemplateResponse(
            request,
            name,
            {
                "user": user,
                "t": translate,
                "replay_message": lambda message: i18n.replay_message(message, translate),
                "language": language,
                "languages": i18n.LANGUAGES,
                "duration": lambda seconds: i18n.duration(seconds, language),
                "reason": lambda value: i18n.hangup_reason(value, language),
                "zone": self.settings.timezone,
                "csrf": _csrf_token(request),
                "here": here(request),
                "active_alerts": self._firing() if user else [],
                **context,
            },
            status_code=status,
        )

    def _firing(self) -> list[str]:
        if self.firing is None:
            return []
        try:
            return self.firing()
        except Exception as exc:  # the database may be away: the page still renders
            log.warning("cannot read the alert rules for the header: %s", exc)
            return []

    def error(self, request: Request, error: PageError) -> Response:
        """The error page; signed-in users keep their navigation."""
        user = self.lookup(request) if "session" in request.scope and self.lookup else None
        return self.render(request, "error.html", user, status=error.status, message=error.message)


def make_pages(settings: Settings) -> Pages:
    """The template environment: autoescaping on, and the helpers templates format with."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True  # every template, whatever its name: call data is hostile
    zone = ZoneInfo(settings.timezone)
    templates.env.globals.update(
        duration=duration, percent=percent, money=money, cost_as_sent=cost_as_sent
    )
    templates.env.globals.update(
        volume_spec=lambda rows, unit, text: charts.volume_spec(rows, unit, zone, text),
        service_spec=lambda rows, unit, text: charts.service_spec(
            rows, unit, zone, settings.service_level_target, text
        ),
    )
    templates.env.filters["local"] = lambda ms: local_time(ms, zone)
    templates.env.filters["call_url"] = lambda call_id: call_url(str(call_id))
    return Pages(settings, templates, zone)


def dashboard_router(pages: Pages, settings: Settings, get_store: Callable[[], Store]) -> APIRouter:
    """Routes of the dashboard, on the app's store and the configured time zone."""
    router = APIRouter(include_in_schema=False)
    zone = pages.zone
    page = pages.render
    throttle = Throttle(get_store)
    proxies = networks(settings.trusted_proxies)

    pages.lookup = lambda request: _session_user(request, get_store())
    pages.firing = lambda: [
        r.name for r in alerts.rules.all_rules(get_store()) if r.firing and r.state == "active"
    ]

    def current_user(request: Request) -> users.User:
        user = _session_user(request, get_store())
        if user is None:
            # Signed out, expired, deleted, or the password changed since this sign-in.
            request.session.clear()
            raise SignInRequired(here(request))
        return user

    def admin(request: Request) -> users.User:
        user = current_user(request)
        if user.role != "admin":
            raise PageError(403, "This page is for admins.")
        return user

    router.include_router(report_routes(page, settings, get_store, current_user, PageError))

    # -- sign-in -------------------------------------------------------------------------------

    @router.get("/login")
    def login_form(request: Request, next: str = "/") -> Response:
        return page(request, "login.html", None, next=safe_next(next), error=None)

    @router.post("/login")
    def login(
        request: Request,
        name: str = Form(""),
        password: str = Form(""),
        csrf: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        _check_csrf(request, csrf)
        address = client_address(request.scope, proxies)
        verdict = throttle.attempt(name, address)
        if verdict.retry_after is not None:
            return refused(request, next, verdict.retry_after)
        try:
            with throttle.checking():
                user = users.authenticate(get_store(), name, password)
        except Busy:
            return refused(request, next, 1, "Too many sign-ins at once; try again.")
        if user is None:
            return page(
                request,
                "login.html",
                None,
                401,
                next=safe_next(next),
                error="Wrong name or password.",
            )
        throttle.succeeded(verdict)
        users.end_session(get_store(), request.session.get("sid"))
        request.session.clear()  # a new session on sign-in: no fixation
        request.session["sid"] = users.start_session(get_store(), user)
        request.session["stamp"] = user.stamp
        request.session["csrf"] = secrets.token_urlsafe(24)
        return RedirectResponse(safe_next(next), status_code=303)

    def refused(request: Request, next: str, wait: int, error: str = _TOO_MANY) -> Response:
        """The sign-in form again, 429, saying how long to wait (no password was checked)."""
        response = page(request, "login.html", None, 429, next=safe_next(next), error=error)
        response.headers["Retry-After"] = str(wait)
        return response

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        _check_csrf(request, csrf)
        users.end_session(get_store(), request.session.get("sid"))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @router.get("/lang/{code}")
    def switch_language(code: str, request: Request, next: str = "/") -> Response:
        response = RedirectResponse(safe_next(next), status_code=303)
        if code in i18n.LANGUAGES:
            response.set_cookie("lang", code, max_age=365 * 86400, samesite="lax", httponly=True)
        return response

    # -- overview ------------------------------------------------------------------------------

    def overview_context(params: Mapping[str, str]) -> dict[str, Any]:
        chosen = _chosen_range(params)
        start, end = _range(chosen, params, zone)
        direction = params.get("direction", "")
        direction = direction if direction in ("0", "1", "2") else ""
        raw = {"from": start.isoformat(), "to": end.isoformat(), "direction": direction}
        try:
            where = query.parse_filters(raw, zone)
        except InvalidParameter:  # a day at the very edge of the calendar, in UTC
            raise PageError(422, _BAD_DATES) from None
        # Here, not at import: the statistics load NumPy (15 MB), which a server needs for no
        # push; the overview's first view loads it.
        from cdrhub.reports import stats

        names = ("agent", "task_id", "intent", "hangup_reason")
        facts = stats.select_facts(get_store(), where, names)
        unit = charts.unit_for(start, end)
        keys = charts.buckets(start, end, unit, zone)

        def report(group_by: tuple[str, ...]) -> list[dict[str, Any]]:
            return stats.aggregate(
                facts,
                group_by,
                tz=zone,
                sl_seconds=settings.service_level_seconds,
                short_abandon_seconds=settings.short_abandon_seconds,
                with_percentiles=False,  # the overview shows none
            )

        def counted(name: str, only: np.ndarray | None = None) -> list[dict[str, Any]]:
            """Calls per value of ``name`` (among the calls ``only`` marks) as bars."""
            return charts.bars(stats.count_by(facts, name, zone, only))

        total = report(())[0]
        over_time = report((unit,))
        agents = sorted(
            (g for g in report(("agent",)) if g["key"]["agent"] is not None),
            key=lambda g: (-g["answered"], -g["calls"]),
        )[:10]
        show_aicc = direction in ("", "2")
        aicc = facts.arrays["direction"] == 2
        return {
            "range": chosen,
            "ranges": RANGES,
            "start": start,
            "end": end,
            "direction": direction,
            "directions": cdr.DIRECTIONS,
            "unit": unit,
            "total": total,
            "volume": charts.volume(over_time, unit, keys),
            "service": charts.service_level(over_time, unit, keys),
            "reasons": counted("hangup_reason"),
            "agents": agents,
            "aicc": show_aicc,
            "aicc_calls": int(aicc.sum()) if show_aicc else 0,
            "tasks": counted("task_id", aicc) if show_aicc else [],
            "intents": counted("intent", aicc) if show_aicc else [],
            "live": end > datetime.now(UTC),
            "query": urlencode({k: v for k, v in params.items() if k in _OVERVIEW_PARAMS}),
            "api_query": urlencode({k: v for k, v in raw.items() if v}),
            "rendered": datetime.now(zone),
        }

    @router.get("/")
    def overview(request: Request) -> Response:
        user = current_user(request)
        params = request.query_params
        start, end = _range(_chosen_range(params), params, zone)
        mark = overview_mark(get_store(), start, end)
        return page(request, "overview.html", user, mark=mark, **overview_context(params))

    @router.get("/overview/live")
    def overview_live(request: Request, mark: str = "") -> Response:
        """The overview's figures alone, which the page swaps in (no reload), or 204 when
        nothing in the period changed since the page's ``mark``: every open tab asks every
        10 seconds, and the answer is then one small query, not the whole overview."""
        user = current_user(request)
        params = request.query_params
        start, end = _range(_chosen_range(params), params, zone)
        now = overview_mark(get_store(), start, end)  # before the figures: never newer than them
        if hmac.compare_digest(mark.encode(), now.encode()):
            return Response(status_code=204, headers={"X-Cdrhub-Mark": now})
        context = overview_context(params)
        response = page(request, "_overview_body.html", user, **context)
        response.headers["X-Cdrhub-Mark"] = now
        return response

    # -- calls ---------------------------------------------------------------------------------

    @router.get("/calls")
    def calls_page(request: Request) -> Response:
        user = current_user(request)
        params = dict(request.query_params)
        error = None
        cursor = params.get("cursor") or None
        try:
            where = call_filter(params, zone)
            listing = query.list_calls(get_store(), where, zone, limit=PAGE_SIZE, cursor=cursor)
        except InvalidParameter as exc:
            # Named by the form's own labels, which the page translates.
            error = [(_LABELS.get(p.field, p.field), p.value, p.expected) for p in exc.fields]
            listing = query.Page([], None)
        # The selection without the page: "newest calls", the export and live rows start over.
        kept = {k: v for k, v in params.items() if k in _CALL_PARAMS and k != "cursor" and v}
        return page(
            request,
            "calls.html",
            user,
            status=422 if error else 200,
            params=params,
            calls=[_row(item) for item in listing.items],
            error=error,
            next_url="/calls?" + urlencode({**kept, "cursor": listing.next_cursor})
            if listing.next_cursor
            else None,
            first_url="/calls?" + urlencode(kept) if cursor else None,
            export_url="/calls/export?" + urlencode(kept),
            # Live rows only on the first page: later pages are further back in time.
            rows_url="/calls/rows?" + urlencode(kept) if not cursor and not error else "",
            since=int(time.time() * 1000),
            directions=cdr.DIRECTIONS,
        )

    @router.get("/calls/rows")
    def calls_rows(request: Request, after: int = 0) -> Response:
        """Calls that arrived since ``after`` (epoch ms, from the page or the last poll) and
        match the page's filters, newest arrival first: what the calls page adds to its top.

        The window reaches :data:`_LIVE_OVERLAP` further back, as a push is stamped when it
        arrives but becomes visible at its commit, a moment later; the page drops rows it
        already shows. ``X-Cdrhub-After`` is the ``after`` for the next poll.
        """
        user = current_user(request)
        polled = int(time.time() * 1000)
        params = {k: v for k, v in request.query_params.items() if k in _CALL_PARAMS}
        try:
            where = call_filter(params, zone)
            mark = query.parse_time(str(max(after, 0)), zone, "after") - _LIVE_OVERLAP
        except InvalidParameter as exc:
            raise PageError(422, exc.detail) from None
        live = (
            select(*query.READ_COLUMNS)
            .where(
                *where.conditions(),
                calls_table.c.received_at > mark,
                # Keeps the start-time index in play: a call pushed now started within a day.
                calls_table.c.start_time >= mark - _LIVE_LOOKBACK,
            )
            .order_by(calls_table.c.received_at.desc())
            .limit(PAGE_SIZE)
        )
        with get_store().read_engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(live).mappings()]
        iso = zones.iso_times(zone)
        items = [_row(query.to_item(r, zone, iso)) for r in rows]
        response = page(request, "_rows.html", user, calls=items)
        response.headers["X-Cdrhub-After"] = str(polled)
        return response

    @router.get("/calls/export")
    def calls_export(request: Request) -> Response:
        """The selection on the calls page as CSV, exactly as ``/api/export`` writes it."""
        current_user(request)  # signed in, or redirected to the sign-in page
        params = {k: v for k, v in request.query_params.items() if k in _CALL_PARAMS}
        try:
            where = call_filter(params, zone)
        except InvalidParameter as exc:
            raise PageError(422, exc.detail) from None
        chunks = export.stream(get_store(), where, "csv", zone)
        stamp = datetime.now(zone).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            chunks,
            media_type=export.MEDIA_TYPES["csv"],
            headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.csv"'},
        )

    @router.get("/call")
    def call_by_id(request: Request) -> Response:
        """A call named by ``?id=``: the address the pages link to (see :func:`call_url`)."""
        user = current_user(request)
        try:
            call_id = query.one_id(request.query_params.getlist("id"))
        except InvalidParameter:
            raise PageError(422, "The address names no call (one id= is needed).") from None
        return call_page(call_id, request, user)

    # Last of the /calls/ routes (call_id_path says why); the address of old links.
    @router.get(call_id_path("/calls/"))
    def call_by_path(call_id: str, request: Request) -> Response:
        return call_page(call_id, request, current_user(request))

    def call_page(call_id: str, request: Request, user: users.User) -> Response:
        found = query.get_call(get_store(), call_id)
        if found is None:
            raise PageError(404, "No call with this id.")
        row, versions = found
        item = query.to_item(row, zone)
        derived = callfacts.derived_fields(row, settings.short_abandon_seconds)
        shown_versions = []
        for version in versions:
            shown = query.raw_version_item(version, zone)
            shown["pretty"] = (
                json.dumps(shown["body"], ensure_ascii=False, indent=2)
                if not isinstance(shown["body"], str)
                else shown["body"]
            )
            shown["received_ms"] = int(version["received_at"].timestamp() * 1000)
            shown_versions.append(shown)
        return page(
            request,
            "call.html",
            user,
            call=item,
            derived=derived,
            fields=[(f, _value_kind(f), item.get(f.column)) for f in reading_order(cdr.FIELDS)],
            counted=counted_as(item),
            back=back_to_list(request),
            timeline=_timeline(item),
            hangup_cause=HANGUP_CAUSES.get(item.get("hangup_code")),
            recording=_playable(item.get("record_url")),
            voicemail=_playable(item.get("leave_msg_url")),
            versions=shown_versions,
            deliveries=sum(v["delivery_count"] for v in versions),
        )

    # -- quarantine ----------------------------------------------------------------------------

    def quarantine_entries() -> list[dict[str, Any]]:
        entries = get_store().quarantined(limit=200)
        for entry in entries:
            try:
                entry["problem"] = json.loads(entry["detail"])
            except (TypeError, ValueError):
                entry["problem"] = {"detail": entry["detail"], "fields": []}
            entry["body_text"] = bytes(entry["body"]).decode("utf-8", errors="replace")
        return entries

    @router.get("/quarantine")
    def quarantine_page(request: Request) -> Response:
        user = admin(request)
        replayed = request.session.pop("replayed", None)
        return page(
            request,
            "quarantine.html",
            user,
            entries=quarantine_entries(),
            replayed=replayed if isinstance(replayed, dict) else None,
        )

    @router.post("/quarantine/replay")
    def quarantine_replay(
        request: Request,
        csrf: str = Form(""),
        entry: int | None = Form(None),
    ) -> Response:
        """Replay, then send the browser to the quarantine page, which shows what happened
        once: reloading it or switching language there replays nothing again."""
        admin(request)
        _check_csrf(request, csrf)
        store = get_store()
        try:
            results = [replay(store, entry)] if entry is not None else replay_all(store)
        except LookupError as exc:
            raise PageError(404, str(exc)) from None
        request.session["replayed"] = _replay_summary(results)
        return RedirectResponse("/quarantine", status_code=303)

    # -- forwarding ----------------------------------------------------------------------------

    def destination_or_404(name: str) -> forward.Destination:
        found = forward.destinations.get(get_store(), name)
        if found is None:
            raise PageError(404, "No destination with this name.")
        return found

    @router.get("/alerts")
    def alerts_page(request: Request) -> Response:
        user = admin(request)
        shown = [alert_view(r) for r in alerts.rules.all_rules(get_store())]
        return page(request, "alerts.html", user, rules=shown)

    @router.get("/alerts/history")
    def alert_history_page(request: Request) -> Response:
        user = admin(request)
        found = alerts.rules.history(get_store(), limit=ALERT_HISTORY_SHOWN)
        return page(request, "alert_history.html", user, items=[history_view(h) for h in found])

    @router.get("/destinations")
    def destinations_page(request: Request) -> Response:
        user = admin(request)
        store = get_store()
        shown = [destination_view(store, d) for d in forward.destinations.all_destinations(store)]
        return page(request, "destinations.html", user, destinations=shown)

    @router.get("/destinations/{name}")
    def destination_page(name: str, request: Request) -> Response:
        user = admin(request)
        store = get_store()
        destination = destination_or_404(name)
        done = request.session.pop("forwarded", None)
        return page(
            request,
            "destination.html",
            user,
            d=destination_view(store, destination),
            attempts=forward.history.attempts(store, destination, limit=ATTEMPTS_SHOWN),
            dead=forward.history.dead_letters(store, destination, limit=DEAD_LETTERS_SHOWN),
            done=done if isinstance(done, dict) else None,
        )

    @router.post("/destinations/{name}/{action}")
    def destination_action(
        name: str,
        action: str,
        request: Request,
        csrf: str = Form(""),
        start: str = Form("", alias="from"),
        end: str = Form("", alias="to"),
        call_filter: str = Form("", alias="filter"),
    ) -> Response:
        """Pause, resume, retry the dead letters or replay a period, then back to the
        destination's page (post/redirect/get), which says once what was done."""
        admin(request)
        _check_csrf(request, csrf)
        if action not in ("pause", "resume", "retry", "replay"):
            raise PageError(404, "There is no such page.")
        store = get_store()
        destination = destination_or_404(name)
        done: dict[str, Any]
        try:
            if action in ("pause", "resume"):
                state = "paused" if action == "pause" else "active"
                reason = "paused by an operator" if action == "pause" else None
                forward.destinations.set_state(store, destination.name, state, reason)
                done = {"action": action}
            elif action == "retry":
                done = {"action": action, "count": forward.history.retry_dead(store, destination)}
            else:
                done = _replay_period(store, destination, start, end, call_filter, zone)
        except LookupError:  # removed meanwhile
            raise PageError(404, "No destination with this name.") from None
        request.session["forwarded"] = done
        return RedirectResponse(f"/destinations/{quote(destination.name, safe='')}", 303)

    return router


#: Rows of the destination page's tables.
ATTEMPTS_SHOWN = 50
DEAD_LETTERS_SHOWN = 100


def destination_view(store: Store, destination: forward.Destination) -> dict[str, Any]:
    """A destination as its pages show it: what ``GET /api/destinations/{name}`` answers
    (the public settings, counts and lag), from the same functions."""
    shown = destination.public() | forward.history.status(store, destination)
    shown["paused_reason"] = forward.destinations.mask_text(destination.paused_reason, destination)
    return shown


def _replay_period(
    store: Store,
    destination: forward.Destination,
    start: str,
    end: str,
    call_filter: str,
    zone: ZoneInfo,
) -> dict[str, Any]:
    """Queue again the events stored on the days ``start`` to ``end`` (both included, the
    call center's days; either may be empty) that pass ``call_filter``; what to show."""
    try:
        first = date.fromisoformat(start) if start.strip() else None
        last = date.fromisoformat(end) if end.strip() else None
        start_ms = _epoch_ms(datetime.combine(first, datetime.min.time(), zone)) if first else None
        end_ms = (
            _epoch_ms(datetime.combine(last + timedelta(days=1), datetime.min.time(), zone))
            if last
            else None
        )
    except (ValueError, OverflowError):
        return {"action": "replay", "error": _BAD_DATES}
    try:
        count = forward.history.replay(
            store,
            destination.name,
            start_ms=start_ms,
            end_ms=end_ms,
            call_filter=call_filter.strip() or None,
        )
    except forward.FilterError as exc:
        why = str(exc)[:200]  # it travels in the session cookie
        return {"action": "replay", "error": "This filter is not understood:", "why": why}
    return {"action": "replay", "count": count, "from": start[:10], "to": end[:10]}


_OVERVIEW_PARAMS = ("range", "from", "to", "direction")
#: The calls form's label of each parameter, for saying which one is wrong.
_LABELS = {
    "from": "From",
    "to": "To",
    "direction": "Direction",
    "answered": "Answered",
    "agent": "Agent",
    "number": "Number",
    "task_id": "Task",
    "intent": "Intent",
    "hangup_reason": "Hangup reason",
    "hangup_by": "hangup by",
    "cursor": "Next page",
}
#: What the calls page's form sends: the API's filters (bar a few) and the number search.
_CALL_PARAMS = frozenset(
    {"from", "to", "direction", "answered", "agent", "number", "task_id", "intent",
     "hangup_reason", "caller", "callee", "order_id", "hangup_by", "call_status",
     "has_recording", "cursor"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SearchFilter(query.CallFilter):
    """The API's filter plus the dashboard's two search boxes, which match what people type.

    The number is looked for anywhere in the caller *or* the callee: a supervisor has the
    customer's number, with or without the country code or a ``+``, and it is the caller of
    an inbound call but the callee of an outbound one. The agent is part of the account or of
    the nickname, in any case: the table shows the nickname, and that is what people type.
    (``/api/calls`` keeps its exact filters, as docs/api.md says.)
    """

    number: str = ""
    agent: str = ""

    def conditions(self) -> list[ColumnElement[bool]]:
        """The API filter's conditions, and each search box as one OR."""
        where = query.CallFilter.conditions(self)
        if self.number:
            where.append(_anywhere((calls_table.c.caller, calls_table.c.callee), self.number))
        if self.agent:
            columns = (calls_table.c.agent_name, calls_table.c.agent_nick_name)
            where.append(_anywhere([func.lower(c) for c in columns], self.agent.lower()))
        return where


def _anywhere(columns: Iterable[Any], text: str) -> ColumnElement[bool]:
    # LIKE with its wildcards escaped: "1001_2" is that number, not a pattern.
    return or_(*(column.contains(text, autoescape=True) for column in columns))


def _number(typed: str) -> str:
    """What a number search looks for: a phone number's digits (``+86 138-0000 0001`` is
    ``8613800000001``, as NXCC sends numbers), or the text as typed (a SIP URI)."""
    text = typed.strip()
    if re.fullmatch(r"[\d\s+\-().]+", text):
        return re.sub(r"\D", "", text)
    return text


def call_filter(params: Mapping[str, str], zone: ZoneInfo) -> query.CallFilter:
    """The calls page's selection, parsed by the API's own parser, and the search boxes.

    A bare date in ``to`` is the last day shown, included (the date picker's meaning), so it
    becomes the next local midnight; the API's ``to`` is exclusive.
    """
    raw = {k: v for k, v in params.items() if k in query.FILTER_NAMES and k != "agent" and v}
    to = raw.get("to", "").strip()
    if to and len(to) == 10:
        try:
            raw["to"] = (date.fromisoformat(to) + timedelta(days=1)).isoformat()
        except ValueError:
            pass  # the API's parser names the bad value
        except OverflowError:  # 9999-12-31: the last day there is, so no upper bound
            del raw["to"]
    where = query.parse_filters(raw, zone)
    number = _number(params.get("number", ""))
    agent = params.get("agent", "").strip()
    if not number and not agent:
        return where
    return SearchFilter(where.start, where.end, where.values, number=number, agent=agent)


def call_url(call_id: str) -> str:
    """The dashboard's address of a call, for every link to one.

    A query parameter, not a path segment: browsers resolve ``.`` and ``..`` segments (even
    written ``%2E``) before sending, and ``/calls/rows`` or ``/calls/export`` are pages of
    their own, while a percent-encoded query value arrives exactly as it was.
    """
    return "/call?id=" + quote(call_id, safe="")


def here(request: Request) -> str:
    """The address of ``request`` as the browser sent it, for coming back to it (after
    sign-in, from the language switch). Built from the raw path: the decoded one has lost
    what ``%2F``, ``%3F`` or ``%23`` were, so ``/calls/q%3Fx`` would come back as the call
    ``q``. Bytes outside the URL's own characters are percent-encoded, never dropped."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = quote(raw, safe="/%!$&'()*+,;=:@-._~")
    query_string = request.scope.get("query_string", b"")
    if query_string:
        path += "?" + quote(query_string, safe="/%!$&'()*+,;=:@-._~?")
    return path


def safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to someone else's.

    Browsers read ``//host`` and ``/\\host`` as another site, so both are refused, and so
    is anything with control characters.
    """
    if (
        not target.startswith("/")
        or target.startswith(("//", "/\\"))
        or any(ord(c) < 32 or c == "\\" for c in target)
    ):
        return "/"
    return target


def _session_user(request: Request, store: Store) -> users.User | None:
    """The user of the request's session, if it is still live on the server and was signed in
    with the password the account has now."""
    user = users.session_user(store, request.session.get("sid"))
    if user is None or not hmac.compare_digest(user.stamp, str(request.session.get("stamp"))):
        return None
    return user


def _csrf_token(request: Request) -> str:
    if "session" not in request.scope:
        return ""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def _check_csrf(request: Request, presented: str) -> None:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(
        presented.encode(), expected.encode()
    ):
        raise PageError(403, "The form expired or came from another site; reload the page.")


def overview_mark(store: Store, start: datetime, end: datetime) -> str:
    """A fingerprint of the calls of ``[start, end)``, cheap to read: it changes whenever one
    of them is stored, corrected or deleted, because every such write bumps its hour's
    ``stat_hours.changes`` (see :mod:`cdrhub.rollup`); the period itself is part of it, so
    "today" at midnight is a new mark too."""
    first, last = _epoch_ms(start), _epoch_ms(end)
    slots, changes = rollup.changes_between(store, first, last)
    return f"{first}.{last}.{slots}.{changes}"


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _chosen_range(params: Mapping[str, str]) -> str:
    """The period the overview shows: the ``range`` asked for, else custom when dates are
    given (a link with only dates means those dates), else today."""
    chosen = params.get("range")
    if chosen in RANGES:
        return chosen
    return "custom" if params.get("from") or params.get("to") else "today"


def _range(chosen: str, params: Mapping[str, str], zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The chosen period as local-midnight bounds ``[start, end)``.

    Custom dates that are no day, or a period longer than :data:`MAX_PERIOD_DAYS`, are a 422
    page: the charts draw every day of the period, so its length must be bounded.
    """
    today = datetime.now(zone).date()

    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=zone)

    if chosen != "custom":
        days = {"today": (0, 1), "yesterday": (-1, 0), "7d": (-6, 1), "30d": (-29, 1)}[chosen]
        return midnight(today + timedelta(days=days[0])), midnight(today + timedelta(days=days[1]))
    try:
        first = date.fromisoformat(params.get("from") or params.get("to") or "")
        last = max(first, date.fromisoformat(params.get("to") or params.get("from") or ""))
        start, end = midnight(first), midnight(last + timedelta(days=1))
    except (ValueError, OverflowError):
        raise PageError(422, _BAD_DATES) from None
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise PageError(422, "Choose a period of at most ten years.")
    return start, end


#: Bytes of replay outcomes kept for the page (the session cookie must stay under 4 KB).
_REPLAYS_ROOM = 1500
#: The longest callId a replay outcome links to; longer ones are named, shortened.
_LINKED_ID_CHARS = 64


def _replay_summary(results: list[ReplayResult]) -> dict[str, Any]:
    """What a replay did, small enough for the session cookie: the counts, and as many
    outcomes as fit (messages cut short: a refused body's values can be long)."""
    shown: list[dict[str, Any]] = []
    room = _REPLAYS_ROOM
    for r in results:
        item: dict[str, Any] = {
            "entry_id": r.entry_id,
            "stored": r.stored,
            "message": r.message[:100],
        }
        # A link needs the whole id (a cut one opens another call or none); a long one is
        # only named.
        if r.call_id and len(r.call_id) <= _LINKED_ID_CHARS:
            item["call_id"] = r.call_id
        elif r.call_id:
            item["call_label"] = r.call_id[: _LINKED_ID_CHARS - 1] + "…"
        room -= len(json.dumps(item))  # as the session middleware will write it (\u escapes)
        if room < 0:
            break
        shown.append(item)
    return {"total": len(results), "stored": sum(r.stored for r in results), "shown": shown}


def _row(item: dict[str, Any]) -> dict[str, Any]:
    talk = None
    if item.get("answered") and item.get("answer_time_ms") and item.get("end_time_ms"):
        talk = (item["end_time_ms"] - item["answer_time_ms"]) / 1000
    return {**item, "talk": talk, "direction_name": cdr.DIRECTIONS.get(item.get("direction"))}


def _value_kind(field: cdr.Field) -> str:
    """How the call page shows a field's value."""
    if field.column in cdr.TIME_COLUMNS:
        return "time"
    if field.name in ("callDuration", "ringDuration", "queueDuration"):
        return "seconds"
    if field.name in ("direction", "hangupBy", "answered", "hangupCode", "hangupReason"):
        return field.name
    if field.name == "totalCustomerPrice":
        return "money"
    return "text"


#: Hangup codes in words. NXCC does not list its codes, but its hangup reasons are the names
#: of ITU-T Q.850 causes (NORMAL_CLEARING, USER_BUSY...), whose numbers telephony platforms
#: report as the code; so a code is read as Q.850, and the page says so beside the number.
#: Other codes show as the number alone.
HANGUP_CAUSES = {
    1: "unallocated number",
    16: "normal call clearing",
    17: "user busy",
    18: "no user responding",
    19: "no answer",
    21: "call rejected",
    22: "number changed",
    27: "destination out of order",
    28: "invalid number format",
    31: "normal, unspecified",
    34: "no circuit available",
    38: "network out of order",
    41: "temporary failure",
    42: "switching equipment congestion",
    102: "recovery on timer expiry",
    127: "interworking, unspecified",
}

_STEPS = (
    ("Start", "start_time"),
    ("Ring", "ring_time"),
    ("Queue in", "in_queue_time"),
    ("Queue out", "out_queue_time"),
    ("Answer", "answer_time"),
    ("End", "end_time"),
)


def _timeline(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The call's moments in time order, each with the seconds since the start."""
    found = [(label, item[f"{col}_ms"]) for label, col in _STEPS if item.get(f"{col}_ms")]
    found.sort(key=lambda step: step[1])
    first = item.get("start_time_ms") or (found[0][1] if found else 0)
    return [{"label": label, "ms": ms, "offset": (ms - first) / 1000} for label, ms in found]


def _playable(url: Any) -> str | None:
    """A recording URL the page may put in an <audio> element: http(s) only."""
    if isinstance(url, str) and url.lower().startswith(("https://", "http://")):
        return url
    return None


def local_time(ms: int | None, zone: ZoneInfo) -> str:
    """Epoch ms as the call center's wall-clock time, ``2026-11-24 17:02:11`` (the page header
    names the zone)."""
    if ms is None:
        return "–"
    moment = zones.local(ms, zone)
    if moment is None:  # a stored time with no date here (past year 9999): the ms say it
        return "–"
    return moment.isoformat(sep=" ", timespec="seconds")[:19]


def duration(seconds: float | None) -> str:
    """``83`` to ``1m 23s`` (English; pages use :func:`i18n.duration` in their language)."""
    return i18n.duration(seconds, "en")


def percent(value: float | None) -> str:
    """A ratio as a percentage; a dash where there was nothing to divide by."""
    return "–" if value is None else f"{value * 100:.1f}%"


def money(value: float | None) -> str:
    """A cost with two decimals (NXCC does not say the currency)."""
    return "–" if value is None else f"{value:,.2f}"


def cost_as_sent(value: float | None) -> str:
    """One call's cost with every decimal NXCC sent (``0.245`` stays ``0.245``, never
    ``0.24``), at least two, no float noise and no exponent."""
    if value is None:
        return "–"
    text = format(Decimal(repr(float(value))), ",f")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


#: The call page's fields in the order a person reads a call: who called whom, how it
#: ended, when each step happened, how long it took, what it cost, then links and ids.
#: Fields not named here (a newer NXCC's) follow in the order of :data:`cdr.FIELDS`.
READING_ORDER = (
    "direction", "caller", "callee", "agentName", "agentNickName",
    "answered", "callStatus", "hangupReason", "hangupCode", "hangupBy",
    "startTime", "ringTime", "inQueueTime", "outQueueTime", "answerTime", "endTime",
    "callDuration", "ringDuration", "queueDuration", "totalCustomerPrice",
    "recordUrl", "leaveMsgUrl", "dtmfKeys", "intent", "taskId", "orderId", "other", "callId",
)  # fmt: skip


def reading_order(fields: Sequence[cdr.Field]) -> list[cdr.Field]:
    """``fields`` in :data:`READING_ORDER`, the unnamed ones after."""
    rank = {name: n for n, name in enumerate(READING_ORDER)}
    return sorted(fields, key=lambda f: rank.get(f.name, len(rank)))


def counted_as(item: dict[str, Any]) -> dict[str, Any]:
    """Why the reports count this call as answered or not, from what the call log says.

    Only ``answered: true`` counts a call as answered (docs/metrics.md); the vendor's own
    example sends an ``answerTime`` and ``callDuration`` but no ``answered`` flag, so the page
    says what was sent and what follows, rather than "Not answered" beside "Answered at".
    """
    flag = item.get("answered")
    answer_ms = item.get("answer_time_ms")
    if flag is True:
        return {"answered": True, "why": "answered (NXCC sent answered: true).", "note": None}
    why = (
        "not answered (NXCC sent answered: false)."
        if flag is False
        else "not answered: NXCC sent no answered flag, and only answered: true counts a call "
        "as answered."
    )
    note = None
    if answer_ms is not None:
        note = (
            "The call log has an answer time ({time}) although answered is false; reports "
            "follow the flag."
            if flag is False
            else "The call log does have an answer time ({time}) and a call duration of "
            "{duration}, so the call may well have been answered; reports count it as not "
            "answered and without talk time."
        )
    return {"answered": False, "why": why, "note": note}


def back_to_list(request: Request) -> str:
    """The calls list this call was opened from, with its filters (the Referer, when it is
    this site's ``/calls``), else the unfiltered list."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path == "/calls":
        return safe_next("/calls" + (f"?{referer.query}" if referer.query else ""))
    return "/calls"


#: Notifications the alert history page shows, newest first.
ALERT_HISTORY_SHOWN = 200


def _figure(kind: str, value: float | None) -> str:
    if kind == "no_pushes" and value is not None:
        return alerts.format_duration(value)
    return alerts.format_value(kind, value)


def alert_view(rule: alerts.Rule) -> dict[str, Any]:
    """A rule as the Alerts page shows it: targets masked, figure in the rule's unit."""
    shown = rule.public()
    shown["window"] = alerts.format_duration(rule.window_seconds)
    shown["figure"] = _figure(rule.condition.kind, rule.last_value)
    return shown


def history_view(row: dict[str, Any]) -> dict[str, Any]:
    """One notification as the history page shows it (its target was stored masked)."""
    kind = alerts.conditions.parse(row["condition"]).kind
    return {**row, "figure": _figure(kind, row["value"]), "limit": _figure(kind, row["threshold"])}
