"""The HTTP API for reading call data: calls, statistics, exports (all behind an API key);
forwarding's destinations are in :mod:`.destinations`.

Routes only translate HTTP: they parse parameters, check the key's right and call the plain
functions in ``query.py``, ``stats.py`` and ``export.py`` that the CLI calls too.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cdrhub.api.alerts import alerts_router
from cdrhub.api.destinations import destinations_router
from cdrhub.api.wall import wall_links_router
from cdrhub.auth import ApiKey, Right, authenticate
from cdrhub.errors import FieldProblem, Forbidden, InvalidParameter, MissingApiKey, NotFound
from cdrhub.reports import FILTERS, TZ_PARAM, Param, call_id_path, callfacts, export, query
from cdrhub.settings import Settings
from cdrhub.store import Store

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `cdrhub apikey create NAME` (the push token does not work here).",
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an unknown or revoked one"},
    403: {"description": "The API key lacks the right (a read-only key)"},
    422: {"description": "A parameter is unknown or invalid; `fields` names it"},
}


def api_router(settings: Settings, get_store: Callable[[], Store]) -> APIRouter:
    """The ``/api`` routes, reading from whatever store the running app has opened."""
    router = APIRouter(prefix="/api", responses=_ERRORS)

    def require(right: Right) -> Callable[..., ApiKey]:
        def check(
            credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
        ) -> ApiKey:
            if credentials is None:
                raise MissingApiKey(
                    "an API key is needed: send `Authorization: Bearer <key>` "
                    "(create one with `cdrhub apikey create NAME`)"
                )
            key = authenticate(get_store(), credentials.credentials)
            if key is None:
                raise MissingApiKey("unknown or revoked API key")
            if right not in key.rights:
                raise Forbidden(f"API key {key.name!r} is read-only; this needs the {right} right")
            return key

        return check

    reader = Depends(require("read"))
    writer = Depends(require("write"))
    router.include_router(destinations_router(settings, get_store, writer))
    router.include_router(wall_links_router(settings, get_store, writer))
    router.include_router(alerts_router(settings, get_store, writer))

    def context(
        raw: Mapping[str, str], allowed: tuple[Param, ...]
    ) -> tuple[query.CallFilter, ZoneInfo]:
        query.reject_unknown(raw, frozenset(p.name for p in allowed))
        tz = query.zone(raw.get("tz") or settings.timezone)
        return query.parse_filters(raw, tz), tz

    @router.get("/calls", tags=["calls"], dependencies=[reader])
    def list_calls(params: Mapping[str, str] = _documented(_CALLS)) -> dict[str, Any]:
        """Calls matching the filters, newest first (or `order=asc`), one page at a time.

        Pass the answer's `next_cursor` as `cursor` for the next page (with the same filters);
        it is `null` on the last page. Paging is keyset on (start time, callId), so calls
        arriving meanwhile neither repeat nor shift rows. Calls without a start time come last.
        """
        where, tz = context(params, _CALLS)
        page = query.list_calls(
            get_store(),
            where,
            tz,
            limit=query.parse_limit(params.get("limit")),
            order=query.parse_order(params.get("order")),
            cursor=params.get("cursor") or None,
        )
        return {"items": page.items, "next_cursor": page.next_cursor}

    def call_detail(
        call_id: str, params: Mapping[str, str], allowed: tuple[Param, ...]
    ) -> dict[str, Any]:
        query.reject_unknown(params, frozenset(p.name for p in allowed))
        tz = query.zone(params.get("tz") or settings.timezone)
        found = query.get_call(get_store(), call_id)
        if found is None:
            raise NotFound(f"no call with callId {call_id!r}")
        row, versions = found
        return {
            **query.to_item(row, tz),
            "derived": callfacts.derived_fields(row, settings.short_abandon_seconds),
            "raw_versions": [query.raw_version_item(v, tz) for v in versions],
        }

    @router.get("/call", tags=["calls"], dependencies=[reader], responses={404: {}})
    def get_call_by_id(
        request: Request, params: Mapping[str, str] = _documented(_BY_ID)
    ) -> dict[str, Any]:
        """One call, as `/api/calls/{callId}` gives it, named by the `id` parameter: this
        form reaches every callId whatever it holds (`/`, `..`, `?`, a newline), with the id
        percent-encoded as any query value. Links to a call should use it."""
        return call_detail(query.one_id(request.query_params.getlist("id")), params, _BY_ID)

    @router.get(call_id_path("/calls/"), tags=["calls"], dependencies=[reader], responses={404: {}})
    def get_call(call_id: str, params: Mapping[str, str] = _documented(_DETAIL)) -> dict[str, Any]:
        """One call: its columns, the facts derived from them (wait, talk, abandoned...) and
        every distinct raw body received for it, oldest first.

        The callId is the rest of the path, percent-encoded (`/` as `%2F`); clients resolve
        a `.` or `..` segment themselves, so for ids like those use `/api/call?id=`."""
        return call_detail(call_id, params, _DETAIL)

    @router.get("/stats", tags=["stats"], dependencies=[reader])
    def get_stats(params: Mapping[str, str] = _documented(_STATS)) -> dict[str, Any]:
        """Call-center metrics over the calls that started in `[from, to)` and match the
        filters, per group. Every metric is defined in docs/metrics.md; ratios are fractions,
        and a ratio or mean with nothing to divide by is `null`."""
        # The statistics and planning reports are imported by the first request for one: they
        # load NumPy (15 MB), which a server otherwise needs for no push.
        from cdrhub.reports import stats

        where, tz = context(params, _STATS)
        groups = stats.compute(
            get_store(),
            where,
            group_by=stats.parse_group_by(params.get("group_by")),
            tz=tz,
            sl_seconds=_seconds(params, "sl_seconds", settings.service_level_seconds),
            short_abandon_seconds=_seconds(
                params, "short_abandon_seconds", settings.short_abandon_seconds
            ),
        )
        return {"groups": groups}

    def planning_report(kind: str, params: Mapping[str, str]) -> Any:
        from cdrhub.reports import planning, sheets  # NumPy: see get_stats

        where, tz = context(params, _REPORTS)
        options = planning.parse_options(
            params,
            tz=tz,
            sl_seconds=_seconds(params, "sl_seconds", settings.service_level_seconds),
            short_abandon_seconds=_seconds(
                params, "short_abandon_seconds", settings.short_abandon_seconds
            ),
        )
        fmt = params.get("format") or "json"
        if fmt not in ("json", "csv", "xlsx"):
            raise InvalidParameter(
                "invalid value for format", [FieldProblem("format", fmt, "json, csv or xlsx")]
            )
        result = planning.run(kind, get_store(), where, options)
        if fmt == "json":
            return result
        header, rows = planning.table(kind, result)
        if fmt == "csv":
            body = sheets.to_csv(header, rows)
        else:
            body = sheets.to_xlsx([(kind.capitalize(), header, rows)])
        stamp = datetime.now(tz).strftime("%Y%m%d-%H%M%S")
        return Response(
            body,
            media_type=sheets.MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{kind}-{stamp}.{fmt}"'},
        )

    @router.get("/reports/intervals", tags=["reports"], dependencies=[reader])
    def get_intervals(params: Mapping[str, str] = _documented(_REPORTS)) -> Any:
        """Every 15, 30 or 60 minutes of the range (default: today) in `tz`: offered,
        answered, abandoned and short abandons, service level, ASA, AHT (mean talk time),
        longest wait. A day clocks change has 23 or 25 hours of intervals."""
        return planning_report("intervals", params)

    @router.get("/reports/agents", tags=["reports"], dependencies=[reader])
    def get_agents(params: Mapping[str, str] = _documented(_REPORTS)) -> Any:
        """Per agent: handled, answered, missed (put through, not answered; outbound left
        out), total and average talk time, share of all answered calls, first and last call,
        per direction. `sort` by any column."""
        return planning_report("agents", params)

    @router.get("/reports/staffing", tags=["reports"], dependencies=[reader])
    def get_staffing(params: Mapping[str, str] = _documented(_REPORTS)) -> Any:
        """Erlang C per interval: `agents_needed` to answer `sl_target` of calls within
        `sl_seconds`, from the interval's offered calls and AHT, and the service level, ASA
        and occupancy that number gives (docs/metrics.md)."""
        return planning_report("staffing", params)

    @router.get(
        "/export",
        tags=["export"],
        dependencies=[reader],
        response_class=StreamingResponse,
        responses={200: {"content": {t: {} for t in export.MEDIA_TYPES.values()}}},
    )
    def export_calls(params: Mapping[str, str] = _documented(_EXPORT)) -> StreamingResponse:
        """Every matching call, streamed as CSV (UTF-8 with BOM for Excel, formula-like cells
        neutralised), JSON Lines or Parquet, in start-time order."""
        where, tz = context(params, _EXPORT)
        fmt = export.parse_format(params.get("format"))
        bom = query.parse_bool(params["bom"], "bom") if params.get("bom") else True
        chunks = export.stream(get_store(), where, fmt, tz, bom=bom)
        stamp = datetime.now(tz).strftime("%Y%m%d-%H%M%S")
        return StreamingResponse(
            chunks,
            media_type=export.MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="calls-{stamp}.{fmt}"'},
        )

    @router.post("/quarantine/{entry_id}/replay", tags=["quarantine"], dependencies=[writer])
    async def replay_quarantined(entry_id: int) -> dict[str, Any]:
        """Store a quarantined body if today's cdrhub accepts it (needs a key that is not
        read-only)."""
        from cdrhub.ingest import replay

        try:
            result = await run_in_threadpool(replay, get_store(), entry_id)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        return {
            "entry_id": result.entry_id,
            "stored": result.stored,
            "message": result.message,
            "call_id": result.call_id,
        }

    return router


_CALLS = (
    *FILTERS,
    TZ_PARAM,
    Param("order", "`desc` (newest first, the default) or `asc`."),
    Param("limit", f"Calls per page, default {query.DEFAULT_LIMIT}, at most {query.MAX_LIMIT}."),
    Param("cursor", "The `next_cursor` of the previous page."),
)
_DETAIL = (TZ_PARAM,)
_BY_ID = (Param("id", "The callId, exactly as NXCC sent it (percent-encoded)."), TZ_PARAM)
_STATS = (
    *FILTERS,
    TZ_PARAM,
    Param(
        "group_by",
        "`none` (default) or a comma-separated list of at most one of hour, day, week, month "
        "(buckets in `tz`) and any of direction, agent, task_id, intent, hangup_by, "
        "hangup_reason. Example: `day,agent`.",
    ),
    Param(
        "sl_seconds", "Service level threshold in seconds (default CDRHUB_SERVICE_LEVEL_SECONDS)."
    ),
    Param(
        "short_abandon_seconds",
        "Short-abandon threshold in seconds (default CDRHUB_SHORT_ABANDON_SECONDS).",
    ),
)
_REPORTS = (
    *FILTERS,
    TZ_PARAM,
    Param("interval", "Interval length in minutes: 15, 30 (default) or 60."),
    Param("sl_target", "Service-level target for staffing: a fraction such as 0.8 (default)."),
    Param(
        "sl_seconds", "Service level threshold in seconds (default CDRHUB_SERVICE_LEVEL_SECONDS)."
    ),
    Param(
        "short_abandon_seconds",
        "Short-abandon threshold in seconds (default CDRHUB_SHORT_ABANDON_SECONDS).",
    ),
    Param("sort", "Agents: the column to sort by, `-` first for descending (default -handled)."),
    Param("format", "`json` (default), `csv` (UTF-8 with BOM) or `xlsx`."),
)
_EXPORT = (
    *FILTERS,
    TZ_PARAM,
    Param("format", "`csv` (default), `jsonl` or `parquet` (needs the `cdrhub[parquet]` extra)."),
    Param("bom", "CSV only: start with a UTF-8 BOM so Excel reads Chinese text (default true)."),
)


def _documented(params: tuple[Param, ...]) -> Any:
    """A dependency that declares ``params`` (for the OpenAPI schema) and hands over the raw
    query string values, which ``query.py`` parses the same way for the API and the CLI."""
    declared = [
        inspect.Parameter(
            f"p_{p.name}",
            inspect.Parameter.KEYWORD_ONLY,
            default=Query(None, alias=p.name, description=p.doc),
            annotation=str | None,
        )
        for p in params
    ]
    request = inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)

    def dependency(request: Request, **_: Any) -> Mapping[str, str]:
        return request.query_params

    dependency.__signature__ = inspect.Signature([request, *declared])  # type: ignore[attr-defined]
    return Depends(dependency)


def _seconds(params: Mapping[str, str], name: str, default: float) -> float:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InvalidParameter(
            f"invalid value for {name}", [FieldProblem(name, value, "seconds, 0 or more")]
        )
    return number
