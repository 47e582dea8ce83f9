"""The alerts API under ``/api/alerts``: rules, their history, pause/resume and a test send.

Admin keys only (the ``write`` right), as the destinations: whom cdrhub tells, and with which
tokens, is the operator's business. Routes translate HTTP only and call the functions of
:mod:`cdrhub.alerts` that ``cdrhub alert ...`` calls. Target URLs are answered masked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from cdrhub.alerts import Evaluator, Rule, rules
from cdrhub.api.destinations import _body_doc, _json_object
from cdrhub.errors import FieldProblem, InvalidParameter, NotFound
from cdrhub.settings import Settings
from cdrhub.store import Store

#: The body of ``POST /api/alerts``: the options of ``cdrhub alert add``.
CREATE_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "description": "e.g. low-sl"},
    "condition": {"type": "string", "description": 'e.g. "service_level < 80%" (docs/alerts.md)'},
    "window": {
        "description": "30m, 2h, 90s, or seconds",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    "min_calls": {"type": "integer", "minimum": 0},
    "direction": {"type": "string", "enum": list(rules.DIRECTIONS)},
    "task_id": {"type": "string"},
    "hours": {"type": "string", "description": "HH:MM-HH:MM (default CDRHUB_BUSINESS_HOURS)"},
    "language": {"type": "string", "enum": list(rules.LANGUAGES)},
    "notify": {"type": "array", "items": {"type": "string"}, "description": "Apprise URLs"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No rule of that name"}}


def _view(rule: Rule) -> dict[str, Any]:
    return rule.public()


def alerts_router(settings: Settings, get_store: Callable[[], Store], admin: Any) -> APIRouter:
    """The ``/alerts`` routes (mounted under ``/api``), each behind ``admin``."""
    router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[admin])

    def find(name: str) -> Rule:
        found = rules.find(get_store(), name)
        if found is None:
            raise NotFound(f"no alert rule named {name!r} (GET /api/alerts lists them)")
        return found

    @router.get("")
    def list_rules() -> dict[str, Any]:
        """Every rule: condition, window, status (`ok`, `firing`, `paused`), last figure,
        targets masked."""
        return {"items": [_view(r) for r in rules.all_rules(get_store())]}

    @router.post(
        "",
        status_code=201,
        responses={409: {"description": "A rule of that name exists"}},
        openapi_extra=_body_doc(CREATE_FIELDS, ("name", "condition", "notify")),
    )
    async def create_rule(request: Request) -> dict[str, Any]:
        """Add a rule, with the options of `cdrhub alert add`."""
        body = await _json_object(request, CREATE_FIELDS)
        for required in ("name", "condition", "notify"):
            if required not in body:
                raise InvalidParameter(
                    f"{required} is required",
                    [
                        FieldProblem(
                            required, None, CREATE_FIELDS[required].get("description", "a value")
                        )
                    ],
                )
        targets = body["notify"]
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list):
            raise InvalidParameter(
                "notify is a list", [FieldProblem("notify", None, "a list of Apprise URLs")]
            )

        added = await run_in_threadpool(
            rules.add,
            get_store(),
            body["name"],
            body["condition"],
            window=body.get("window", "15m"),
            min_calls=body.get("min_calls", 0),
            direction=body.get("direction"),
            task_id=body.get("task_id"),
            hours=body.get("hours"),
            language=body.get("language", "en"),
            targets=targets,
        )
        return _view(added)

    @router.get("/history")
    def alert_history(
        rule: str | None = Query(None, description="Only this rule's notifications"),
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict[str, Any]:
        """Notifications, newest first: fired, repeated, resolved or test; the figure, the
        target (masked), whether it was delivered, after how many tries, what it answered."""
        return {"items": rules.history(get_store(), rule, limit)}

    @router.get("/{name}", responses=_NOT_FOUND)
    def show_rule(name: str) -> dict[str, Any]:
        """One rule, with its last 20 notifications."""
        rule = find(name)
        return _view(rule) | {"history": rules.history(get_store(), rule.name, 20)}

    @router.post("/{name}/pause", responses=_NOT_FOUND)
    def pause_rule(name: str) -> dict[str, Any]:
        """Stop evaluating the rule (a firing rule is forgotten without a "resolved")."""
        find(name)
        return _view(rules.set_state(get_store(), name, "paused"))

    @router.post("/{name}/resume", responses=_NOT_FOUND)
    def resume_rule(name: str) -> dict[str, Any]:
        """Evaluate the rule again, from a clean state."""
        find(name)
        return _view(rules.set_state(get_store(), name, "active"))

    @router.delete("/{name}", status_code=204, responses=_NOT_FOUND)
    def remove_rule(name: str) -> None:
        """Delete the rule; its history stays."""
        find(name)
        rules.remove(get_store(), name)

    @router.post("/{name}/test", responses=_NOT_FOUND)
    def test_rule(name: str) -> dict[str, Any]:
        """Send a sample notification now; what each target answered."""
        rule = find(name)
        deliveries = Evaluator(get_store(), settings).test(rule)
        return {
            "items": [
                {
                    "target": d.target,
                    "delivered": d.delivered,
                    "attempts": d.attempts,
                    "answer": d.answer,
                }
                for d in deliveries
            ]
        }

    return router
