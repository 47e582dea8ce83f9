"""The Reports pages: intervals, agents and staffing, as text tables with CSV/XLSX downloads.

Each page runs ``planning.run`` with the options ``/api/reports/*`` parses, so the page shows
the API's figures; a viewer may open them (they read, like the overview). An agent's row
links to the calls list filtered to that agent and period.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from cdrhub.errors import InvalidParameter
from cdrhub.reports import query
from cdrhub.settings import Settings
from cdrhub.store import Store

if TYPE_CHECKING:
    from cdrhub.reports import planning

#: What a Reports page keeps from its query string (the form's fields).
_PARAMS = ("from", "to", "interval", "sl_target", "sl_seconds", "direction", "agent", "sort")
_TITLES = {"intervals": "Interval report", "agents": "Agent report", "staffing": "Staffing"}


def report_routes(
    render: Callable[..., Response],
    settings: Settings,
    get_store: Callable[[], Store],
    current_user: Callable[[Request], Any],
    page_error: Callable[[int, str], Exception],
) -> APIRouter:
    """``/reports/{kind}`` and its downloads; ``current_user`` signs people in first."""
    router = APIRouter(include_in_schema=False)

    def selection(params: Mapping[str, str]) -> tuple[dict[str, str], Any, planning.Options]:
        # The planning reports, here and below, are imported by the first report: they load
        # NumPy (15 MB), which a server otherwise needs for no push.
        from cdrhub.reports import planning

        kept = {k: params[k].strip() for k in _PARAMS if params.get(k, "").strip()}
        raw = dict(kept)
        to = raw.get("to", "")
        if len(to) == 10:  # a date picker's last day, included
            try:
                raw["to"] = (date.fromisoformat(to) + timedelta(days=1)).isoformat()
            except (ValueError, OverflowError):
                pass  # the API's parser names the bad value
        tz = query.zone(settings.timezone)
        where = query.parse_filters(raw, tz)
        sl = raw.get("sl_seconds")
        options = planning.parse_options(
            raw,
            tz=tz,
            sl_seconds=settings.service_level_seconds if not sl else _seconds(sl),
            short_abandon_seconds=settings.short_abandon_seconds,
        )
        return kept, where, options

    @router.get("/reports")
    def reports_home(request: Request) -> Response:
        current_user(request)
        return Response(status_code=303, headers={"Location": "/reports/intervals"})

    @router.get("/reports/{kind}")
    def report_page(kind: str, request: Request) -> Response:
        from cdrhub.reports import planning

        user = current_user(request)
        if kind not in planning.KINDS:
            raise page_error(404, "No such report.")
        error = None
        result: dict[str, Any] | None = None
        kept: dict[str, str] = {k: v for k, v in request.query_params.items() if k in _PARAMS}
        try:
            kept, where, options = selection(request.query_params)
            result = planning.run(kind, get_store(), where, options)
        except InvalidParameter as exc:
            error = [(p.field, p.value, p.expected) for p in exc.fields]
        header, rows = planning.table(kind, result) if result else ([], [])
        chosen = {k: v for k, v in kept.items()}
        api = {k: v for k, v in chosen.items() if k != "to"}
        if result and kind != "agents":
            api["from"] = result["intervals"][0]["start"] if result["intervals"] else ""
            api["to"] = result["intervals"][-1]["end"] if result["intervals"] else ""
        return render(
            request,
            "reports.html",
            user,
            status=422 if error else 200,
            kind=kind,
            kinds=planning.KINDS,
            titles=_TITLES,
            params=chosen,
            error=error,
            result=result,
            header=header,
            rows=rows,
            kinds_of=planning.KIND_OF,
            query=urlencode(chosen),
            api_query=urlencode({k: v for k, v in api.items() if v}),
            agent_calls=lambda agent: (
                "/calls?"
                + urlencode(
                    {**{k: chosen[k] for k in ("from", "to") if k in chosen}, "agent": agent}
                )
            ),
        )

    @router.get("/reports/{kind}/download")
    def report_download(kind: str, request: Request, format: str = "xlsx") -> Response:
        from cdrhub.reports import planning, sheets

        current_user(request)
        if kind not in planning.KINDS or format not in sheets.MEDIA_TYPES:
            raise page_error(404, "No such download.")
        try:
            _, where, options = selection(request.query_params)
            result = planning.run(kind, get_store(), where, options)
        except InvalidParameter as exc:
            raise page_error(422, exc.detail) from None
        header, rows = planning.table(kind, result)
        if format == "csv":
            body = sheets.to_csv(header, rows)
        else:
            body = sheets.to_xlsx([(kind.capitalize(), header, rows)])
        return Response(
            body,
            media_type=sheets.MEDIA_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{kind}.{format}"'},
        )

    return router


def _seconds(text: str) -> float:
    from cdrhub.errors import FieldProblem

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InvalidParameter(
            "invalid value for sl_seconds", [FieldProblem("sl_seconds", text, "seconds, 0 or more")]
        )
    return value
