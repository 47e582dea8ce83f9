"""Alert rules in the database: add, list, pause, resume, remove; and their history.

A rule's firing state is stored on its row (``firing_since_ms``, ``last_notified_ms``), so a
restart, or another receiver on the same database, carries on where the last evaluation left
off instead of announcing the same alert again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from cdrhub.alerts.conditions import (
    CALL_KINDS,
    Condition,
    ConditionError,
    _problem,
    parse,
    parse_duration,
)
from cdrhub.alerts.notify import check_target, mask
from cdrhub.errors import Conflict, FieldProblem
from cdrhub.ops import parse_hours
from cdrhub.store import Store
from cdrhub.store.schema import alert_history, alert_rules

LANGUAGES = ("en", "zh")
DIRECTIONS = ("inbound", "outbound")
_NAME_CHARS = 100


@dataclass(frozen=True)
class Rule:
    """One stored rule and its state."""

    id: int
    name: str
    condition: Condition
    window_seconds: float
    min_calls: int
    direction: str | None
    task_id: str | None
    hours: str | None
    language: str
    targets: tuple[str, ...]
    state: str
    created_at_ms: int
    firing_since_ms: int | None
    last_value: float | None
    last_checked_ms: int | None
    last_notified_ms: int | None

    @property
    def firing(self) -> bool:
        return self.firing_since_ms is not None

    @property
    def threshold(self) -> float | None:
        """The figure's limit: the condition's, or for ``no_pushes`` the window itself."""
        if self.condition.kind == "no_pushes":
            return self.window_seconds
        return self.condition.threshold

    def public(self) -> dict[str, Any]:
        """What listings, the API and pages show: targets masked."""
        return {
            "name": self.name,
            "condition": self.condition.text(),
            "window_seconds": self.window_seconds,
            "min_calls": self.min_calls,
            "direction": self.direction,
            "task_id": self.task_id,
            "hours": self.hours,
            "language": self.language,
            "notify": [mask(t) for t in self.targets],
            "state": self.state,
            "status": "paused" if self.state == "paused" else ("firing" if self.firing else "ok"),
            "firing_since_ms": self.firing_since_ms,
            "last_value": self.last_value,
            "last_checked_ms": self.last_checked_ms,
            "last_notified_ms": self.last_notified_ms,
            "created_at_ms": self.created_at_ms,
        }


def _rule(row: Any) -> Rule:
    m = row._mapping
    return Rule(
        id=m["id"],
        name=m["name"],
        condition=parse(m["condition"]),
        window_seconds=m["window_seconds"],
        min_calls=m["min_calls"],
        direction=m["direction"],
        task_id=m["task_id"],
        hours=m["hours"],
        language=m["language"],
        targets=tuple(json.loads(m["targets"])),
        state=m["state"],
        created_at_ms=m["created_at_ms"],
        firing_since_ms=m["firing_since_ms"],
        last_value=m["last_value"],
        last_checked_ms=m["last_checked_ms"],
        last_notified_ms=m["last_notified_ms"],
    )


def check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > _NAME_CHARS:
        raise _problem("name", name, f"1 to {_NAME_CHARS} characters")
    return name.strip()


def add(
    store: Store,
    name: str,
    condition: str,
    *,
    window: str | float = "15m",
    min_calls: int = 0,
    direction: str | None = None,
    task_id: str | None = None,
    hours: str | None = None,
    language: str = "en",
    targets: list[str] | tuple[str, ...] = (),
) -> Rule:
    """Store a new rule; every value is checked first (a 422 names the one that is wrong)."""
    name = check_name(name)
    parsed = parse(condition)
    seconds = parse_duration(window)
    if not isinstance(min_calls, int) or min_calls < 0:
        raise _problem("min_calls", min_calls, "a whole number, 0 or more")
    if direction is not None and direction not in DIRECTIONS:
        raise _problem("direction", direction, "inbound or outbound")
    if (direction or task_id or min_calls) and parsed.kind not in CALL_KINDS:
        raise _problem(
            "condition",
            condition,
            "service_level, abandon_rate or asa when --direction, --task or --min-calls is given",
        )
    if hours is not None:
        try:
            parse_hours(hours)
        except ValueError:
            raise _problem("hours", hours, "HH:MM-HH:MM such as 08:00-20:00") from None
    if language not in LANGUAGES:
        raise _problem("language", language, "en or zh")
    if not targets:
        raise _problem("notify", [], "at least one Apprise URL (--notify dingtalk://...)")
    checked = [check_target(t) for t in targets]
    with store.writing() as conn:
        exists = conn.execute(select(alert_rules.c.id).where(alert_rules.c.name == name)).first()
        if exists:
            raise Conflict(
                f"an alert rule named {name!r} exists (`cdrhub alert list`)",
                [FieldProblem("name", name, "a name no other rule has")],
            )
        conn.execute(
            insert(alert_rules).values(
                name=name,
                condition=parsed.text(),
                window_seconds=seconds,
                min_calls=min_calls,
                direction=direction,
                task_id=task_id,
                hours=hours,
                language=language,
                targets=json.dumps(checked),
                state="active",
                created_at_ms=int(time.time() * 1000),
            )
        )
    return require(store, name)


def all_rules(store: Store) -> list[Rule]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(alert_rules).order_by(alert_rules.c.name)).all()
    return [_rule(r) for r in rows]


def find(store: Store, name: str) -> Rule | None:
    with store.read_engine.connect() as conn:
        row = conn.execute(select(alert_rules).where(alert_rules.c.name == name)).first()
    return None if row is None else _rule(row)


def require(store: Store, name: str) -> Rule:
    found = find(store, name)
    if found is None:
        raise LookupError(f"no alert rule is named {name!r}; `cdrhub alert list` shows them")
    return found


def set_state(store: Store, name: str, state: str) -> Rule:
    """Pause or resume. Pausing forgets the firing state: a resumed rule starts afresh."""
    rule = require(store, name)
    values: dict[str, Any] = {"state": state}
    if state == "paused":
        values.update(firing_since_ms=None, last_notified_ms=None)
    with store.writing() as conn:
        conn.execute(update(alert_rules).where(alert_rules.c.id == rule.id).values(**values))
    return require(store, name)


def remove(store: Store, name: str) -> None:
    """Delete the rule; its history stays (it names the rule)."""
    rule = require(store, name)
    with store.writing() as conn:
        conn.execute(delete(alert_rules).where(alert_rules.c.id == rule.id))


def history(store: Store, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest notifications first (all rules, or one by name)."""
    query = select(alert_history).order_by(alert_history.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(alert_history.c.rule_name == name)
    with store.read_engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def check_state(state: str) -> str:
    if state not in ("active", "paused"):
        raise ConditionError(f"state {state!r}: expected active or paused")
    return state
