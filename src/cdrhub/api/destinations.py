"""The forwarding API under ``/api/destinations``: destinations, attempts, dead letters, replays.

Only API keys that are not read-only (the ``write`` right) may use it: where calls are sent
is the operator's business. Routes translate HTTP only: they read the JSON body and the
parameters and call the functions of :mod:`cdrhub.forward` that ``cdrhub forward ...`` calls,
so the API and the CLI behave alike.

Secrets never leave. A destination is shown as :meth:`Destination.public` (secret, token and
URL passwords masked), a refused secret or token is not repeated in the error, and no answer
carries one, except a secret cdrhub generated itself (on create, or rotate-secret without a
secret given), in that one answer as ``generated_secret``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from cdrhub.errors import BadJson, Conflict, FieldProblem, InvalidParameter, NotFound
from cdrhub.forward import Destination, DestinationError, FilterError, destinations, history
from cdrhub.reports import query
from cdrhub.settings import Settings
from cdrhub.store import Store

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
#: The longest grace period of an old secret after rotate-secret (30 days).
MAX_GRACE_SECONDS = 30 * 86400.0
_HIDDEN = frozenset({"secret", "token"})

_TIME = {
    "description": "`now`, `beginning`, ISO 8601 (in CDRHUB_TIMEZONE unless it has an offset) "
    "or epoch ms",
    "oneOf": [{"type": "string"}, {"type": "integer"}],
}
_EVENTS = {
    "description": "Event types: a list, or a comma-separated string",
    "oneOf": [
        {"type": "array", "items": {"type": "string", "enum": ["call.created", "call.updated"]}},
        {"type": "string"},
    ],
}
#: The body of ``POST /api/destinations``: the options of ``cdrhub forward add``.
CREATE_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "description": "One word, e.g. crm"},
    "url": {"type": "string", "description": "Its scheme picks the kind (docs/forwarding.md)"},
    "secret": {"type": "string", "description": "whsec_...; omitted: generated, answered once"},
    "format": {"type": "string", "enum": ["standard", "nxcc"]},
    "token": {"type": "string", "description": "With format nxcc: the receiver's token"},
    "events": _EVENTS,
    "filter": {"type": "string", "description": 'e.g. "direction=inbound answered=no"'},
    "from": {**_TIME, "description": "Start with events from: " + _TIME["description"]},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 256},
    "rate_per_second": {"type": "number", "exclusiveMinimum": 0},
    "timeout_seconds": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": destinations.MAX_TIMEOUT_SECONDS,
    },
}
ROTATE_FIELDS: dict[str, dict[str, Any]] = {
    "secret": {"type": "string", "description": "The new whsec_...; omitted: generated"},
    "grace_seconds": {
        "type": "number",
        "minimum": 0,
        "maximum": MAX_GRACE_SECONDS,
        "description": "How long the old secret also signs (default 86400)",
    },
}
REPLAY_FIELDS: dict[str, dict[str, Any]] = {
    "from": {"type": "string", "description": "Events stored from (ISO 8601 or epoch ms)"},
    "to": {"type": "string", "description": "... up to, excluded (ISO 8601 or epoch ms)"},
    "filter": {"type": "string", "description": "Only these calls (the filter language)"},
    "events": _EVENTS,
}

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No destination of that name"}}
_BAD_BODY: dict[int | str, dict[str, Any]] = {400: {"description": "The body is not a JSON object"}}


def destinations_router(
    settings: Settings, get_store: Callable[[], Store], admin: Any
) -> APIRouter:
    """The ``/destinations`` routes (mounted under ``/api``), each behind ``admin``."""
    router = APIRouter(prefix="/destinations", tags=["forwarding"], dependencies=[admin])
    tz = ZoneInfo(settings.timezone)

    def find(name: str) -> Destination:
        found = destinations.get(get_store(), name)
        if found is None:
            raise NotFound(f"no destination named {name!r} (GET /api/destinations lists them)")
        return found

    @router.get("")
    def list_destinations() -> dict[str, Any]:
        """Every destination, by name, with its state, what it still owes (`waiting`), its dead
        letters, its lag (age of the oldest event it has not received) and last success and
        error. Secrets are shown only as `"set"`."""
        store = get_store()
        return {"items": [view(store, d, tz) for d in destinations.all_destinations(store)]}

    @router.post(
        "",
        status_code=201,
        responses={**_BAD_BODY, 409: {"description": "A destination of that name exists"}},
        openapi_extra=_body_doc(CREATE_FIELDS, ("name", "url")),
    )
    async def create_destination(request: Request) -> dict[str, Any]:
        """Add a destination, with the options of `cdrhub forward add`. A webhook without a
        `secret` gets one generated: it is in this answer's `generated_secret`, and never
        shown again."""
        body = await _json_object(request, CREATE_FIELDS)
        options = {
            "secret": _text(body, "secret"),
            "fmt": _text(body, "format") or "standard",
            "token": _text(body, "token"),
            "event_types": _events(body),
            "call_filter": _text(body, "filter"),
            "start": _start(body.get("from"), tz),
            "concurrency": _number(body, "concurrency", whole=True),
            "rate_per_second": _number(body, "rate_per_second"),
        }
        timeout = _number(body, "timeout_seconds")
        name = (_text(body, "name", required=True) or "").strip()
        url = _text(body, "url", required=True) or ""

        def create() -> dict[str, Any]:
            store = get_store()
            if destinations.get(store, name) is not None:
                raise _exists(name)
            try:
                added, generated = destinations.add(
                    store,
                    name,
                    url,
                    timeout_seconds=10.0 if timeout is None else timeout,
                    **options,  # type: ignore[arg-type]
                )
            except DestinationError as exc:
                raise _refused(exc, body) from None
            except IntegrityError:  # another request added the name meanwhile
                raise _exists(name) from None
            return {**view(store, added, tz), "generated_secret": generated}

        return await run_in_threadpool(create)

    @router.get("/{name}", responses=_NOT_FOUND)
    def get_destination(name: str) -> dict[str, Any]:
        """One destination, as the list shows it."""
        return view(get_store(), find(name), tz)

    @router.delete("/{name}", responses=_NOT_FOUND)
    def delete_destination(name: str) -> dict[str, Any]:
        """Remove a destination and what was waiting for it (its attempts stay until pruned)."""
        try:
            removed = destinations.remove(get_store(), name)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        return {"name": removed.name, "removed": True}

    @router.post("/{name}/pause", responses=_NOT_FOUND)
    def pause_destination(name: str) -> dict[str, Any]:
        """Stop sending; events wait, and go out in order on resume."""
        return set_state(name, "paused", "paused by an operator")

    @router.post("/{name}/resume", responses=_NOT_FOUND)
    def resume_destination(name: str) -> dict[str, Any]:
        """Send again from where it stopped (also after an automatic pause)."""
        return set_state(name, "active", None)

    def set_state(name: str, state: str, reason: str | None) -> dict[str, Any]:
        store = get_store()
        try:
            changed = destinations.set_state(store, name, state, reason)
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        return view(store, changed, tz)

    @router.post(
        "/{name}/rotate-secret",
        responses={**_NOT_FOUND, **_BAD_BODY, 409: {"description": "Not a webhook"}},
        openapi_extra=_body_doc(ROTATE_FIELDS),
    )
    async def rotate_secret(name: str, request: Request) -> dict[str, Any]:
        """Sign with a new secret, and with the old one too for `grace_seconds`. A secret
        generated here is in this answer's `generated_secret`, and never shown again."""
        body = await _json_object(request, ROTATE_FIELDS)
        secret = _text(body, "secret")
        grace = _number(body, "grace_seconds")
        if grace is not None and not 0 <= grace <= MAX_GRACE_SECONDS:
            raise _invalid("grace_seconds", grace, f"seconds from 0 to {MAX_GRACE_SECONDS:g}")

        def rotate() -> dict[str, Any]:
            store = get_store()
            find(name)
            try:
                changed, new = destinations.rotate_secret(
                    store, name, secret, 86400.0 if grace is None else grace
                )
            except DestinationError as exc:
                if exc.field is None:  # a kind that does not sign
                    raise Conflict(str(exc)) from None
                raise _refused(exc, body) from None
            except LookupError as exc:
                raise NotFound(str(exc)) from None
            return {**view(store, changed, tz), "generated_secret": None if secret else new}

        return await run_in_threadpool(rotate)

    @router.get("/{name}/attempts", responses=_NOT_FOUND)
    def list_attempts(
        name: str,
        request: Request,
        failed: str | None = Query(None, description="`true`: failed attempts only"),
        limit: str | None = Query(
            None,
            description=f"How many, newest first (default {DEFAULT_LIMIT}, at most {MAX_LIMIT})",
        ),
    ) -> dict[str, Any]:
        """Delivery attempts, newest first: time, event id, ok, status, latency, error and
        an excerpt of the destination's answer."""
        query.reject_unknown(request.query_params, frozenset({"failed", "limit"}))
        only_failed = query.parse_bool(failed, "failed") if failed else False
        destination = find(name)
        rows = history.attempts(
            get_store(), destination, failed_only=only_failed, limit=_limit(limit)
        )
        return {"items": [_times(_without_ids(r), tz) for r in rows]}

    @router.get("/{name}/dead-letters", responses=_NOT_FOUND)
    def list_dead_letters(
        name: str,
        request: Request,
        limit: str | None = Query(None, description=f"How many (default {DEFAULT_LIMIT})"),
    ) -> dict[str, Any]:
        """Events whose every attempt failed, newest first, with the last status and error."""
        query.reject_unknown(request.query_params, frozenset({"limit"}))
        rows = history.dead_letters(get_store(), find(name), limit=_limit(limit))
        return {"items": [_times(r, tz) for r in rows]}

    @router.post("/{name}/retry", responses=_NOT_FOUND)
    def retry_dead_letters(name: str) -> dict[str, int]:
        """Put every dead letter back in line now (same event ids; the schedule starts over)."""
        return {"queued": history.retry_dead(get_store(), find(name))}

    @router.post(
        "/{name}/replay",
        responses={**_NOT_FOUND, **_BAD_BODY},
        openapi_extra=_body_doc(REPLAY_FIELDS),
    )
    async def replay(name: str, request: Request) -> dict[str, int]:
        """Send again the events stored in `[from, to)` (all when omitted) that match
        `filter`, with their original ids. Events still waiting keep their place."""
        body = await _json_object(request, REPLAY_FIELDS)
        bounds = {key: _time(body.get(key), key, tz) for key in ("from", "to")}
        if None not in bounds.values() and bounds["to"] <= bounds["from"]:  # type: ignore[operator]
            raise _invalid("to", body["to"], "a time after `from`")
        call_filter = _text(body, "filter")
        types = _events(body)
        try:
            chosen = destinations.parse_events(types) if types is not None else None
        except DestinationError as exc:
            raise _refused(exc, body) from None

        def run() -> int:
            find(name)
            try:
                return history.replay(
                    get_store(),
                    name,
                    start_ms=bounds["from"],
                    end_ms=bounds["to"],
                    call_filter=call_filter,
                    event_types=chosen,
                )
            except FilterError as exc:
                raise _invalid("filter", call_filter, str(exc)) from None
            except LookupError as exc:
                raise NotFound(str(exc)) from None

        return {"queued": await run_in_threadpool(run)}

    return router


def view(store: Store, destination: Destination, tz: ZoneInfo) -> dict[str, Any]:
    """A destination as the API and the dashboard show it: its public settings, its
    counts and lag (:func:`history.status`), and each time as ISO 8601 beside its ``_ms``."""
    shown = destination.public() | history.status(store, destination)
    shown["paused_reason"] = destinations.mask_text(destination.paused_reason, destination)
    return _times(shown, tz)


def _times(row: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """Each ``..._ms`` time with an ISO 8601 twin in ``tz`` (``at_ms`` -> ``at``)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.endswith("_ms") and key != "latency_ms":
            out[key[:-3]] = (
                None
                if value is None
                else datetime.fromtimestamp(value / 1000, tz).isoformat(timespec="milliseconds")
            )
        out[key] = value
    return out


def _without_ids(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "destination_id"}


def _body_doc(fields: dict[str, dict[str, Any]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": fields, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {
        "requestBody": {
            "required": bool(required),
            "content": {"application/json": {"schema": schema}},
        }
    }


async def _json_object(request: Request, allowed: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``); unknown fields are refused, and
    their values not repeated (a misspelt ``secret`` is still a secret)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise BadJson(
            "the body is not JSON", [FieldProblem("body", None, "a JSON object")]
        ) from None
    if not isinstance(value, dict):
        raise BadJson(
            "the body is JSON but not an object",
            [FieldProblem("body", type(value).__name__, "a JSON object")],
        )
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        expected = "one of " + ", ".join(allowed)
        raise InvalidParameter(
            f"unknown field {unknown[0]!r}", [FieldProblem(k, None, expected) for k in unknown]
        )
    return value


def _shown(field: str, value: Any) -> Any:
    """A value as an error may repeat it: never a secret or a token, a URL masked."""
    if field in _HIDDEN and value is not None:
        return "***"
    if field == "url" and isinstance(value, str):
        try:
            return destinations.masked_url(value)
        except ValueError:
            return "***"
    return value


def _invalid(field: str, value: Any, expected: str) -> InvalidParameter:
    return InvalidParameter(
        f"invalid value for {field}", [FieldProblem(field, _shown(field, value), expected)]
    )


def _refused(exc: DestinationError, body: dict[str, Any]) -> InvalidParameter:
    field = exc.field or "body"
    value = body.get(field) if field in body else None
    return InvalidParameter(
        f"invalid destination: {exc}", [FieldProblem(field, _shown(field, value), str(exc))]
    )


def _exists(name: str) -> Conflict:
    return Conflict(
        f"a destination named {name!r} exists",
        [FieldProblem("name", name, "a name no other destination has")],
    )


def _text(body: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise _invalid(field, None, "a string (required)")
        return None
    if not isinstance(value, str) or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _invalid(field, value, "a string without control characters")
    return value


def _number(body: dict[str, Any], field: str, *, whole: bool = False) -> Any:
    value = body.get(field)
    if value is None:
        return None
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise _invalid(field, value, "a whole number" if whole else "a number")
    return value


def _events(body: dict[str, Any]) -> str | None:
    value = body.get("events")
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str) or not value.strip():
        raise _invalid("events", value, 'event types, e.g. ["call.created", "call.updated"]')
    return value


def _time(value: Any, field: str, tz: ZoneInfo) -> int | None:
    """ISO 8601 (in ``tz`` unless it has an offset) or epoch ms, as epoch ms."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(field, value, "ISO 8601 (2026-11-24 or 2026-11-24T08:00) or epoch ms")
    return int(query.parse_time(str(value), tz, field).timestamp() * 1000)


def _start(value: Any, tz: ZoneInfo) -> str | int | None:
    if value in ("now", "beginning"):
        return str(value)
    return _time(value, "from", tz)


def _limit(value: str | None) -> int:
    if value in (None, ""):
        return DEFAULT_LIMIT
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= MAX_LIMIT:
        raise _invalid("limit", value, f"a whole number from 1 to {MAX_LIMIT}")
    return number
