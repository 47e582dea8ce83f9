"""The evaluator: each rule's figure now, its firing/resolved transitions, and who is told.

One notification when a rule starts firing, one when it resolves (with how long it lasted),
and while it keeps firing at most one every ``repeat_seconds``. Each transition is claimed in
the database with a compare-and-set before anything is sent, so even two evaluators on one
database (``serve`` runs it only in the process holding the ``alerts`` lock) cannot announce
the same transition twice. :meth:`Evaluator.evaluate_once` takes ``now``: the tests and the
benchmark drive it without waiting minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, insert, select, update

from cdrhub.alerts import messages, notify
from cdrhub.alerts.rules import Rule, all_rules
from cdrhub.forward import destinations, history
from cdrhub.ops import Activity, parse_hours
from cdrhub.reports import CallFilter
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import alert_history, alert_rules, calls, quarantine

log = logging.getLogger("cdrhub.alerts")

#: Refusals the push endpoint answers before it reads a body, so they are not quarantined:
#: counted in the process that answered them.
_UNQUARANTINED = frozenset(
    {"unauthorized", "forbidden_address", "too_many_auth_failures", "method_not_allowed"}
)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How far back, past its window, ``no_pushes`` looks for the last push (by start time,
#: which is indexed): a call is pushed when it ends, within hours of its start.
_PUSH_LOOKBACK_S = 86_400


class Refusals:
    """Times of the pushes this process refused before quarantine (401, 403, 429, 405)."""

    def __init__(self, keep_seconds: float = 86_400) -> None:
        self._times: deque[float] = deque()
        self._keep = keep_seconds
        self._lock = threading.Lock()

    def record(self, result: str, now: float | None = None) -> None:
        if result not in _UNQUARANTINED:
            return
        moment = time.time() if now is None else now
        with self._lock:
            self._times.append(moment)
            while self._times and self._times[0] < moment - self._keep:
                self._times.popleft()

    def since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for t in self._times if t >= moment)


@dataclass
class Sources:
    """What the figures read besides the database: this process's view of the push path."""

    activity: Activity | None = None
    refusals: Refusals = field(default_factory=Refusals)
    spool_status: Callable[[], dict[str, Any]] | None = None
    reconcile_status: Callable[[], dict[str, Any]] | None = None


@dataclass(frozen=True)
class Figure:
    """A rule's figure now: ``value`` (None: nothing to judge, e.g. too few calls), and
    ``calls``, the queued calls it was computed from (call kinds only)."""

    value: float | None
    calls: int | None = None


@dataclass(frozen=True)
class Transition:
    """What one evaluation did for one rule: ``firing``, ``repeat`` or ``resolved``."""

    rule: str
    kind: str
    value: float | None
    deliveries: list[notify.Delivery]


class Evaluator:
    """Evaluates every active rule of one store; thread-compatible (one scheduler calls it)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        sources: Sources | None = None,
        *,
        retry_delays: tuple[float, ...] = notify.RETRY_DELAYS,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sources = sources or Sources()
        self.retry_delays = retry_delays
        self.started = time.time()
        self._zone = ZoneInfo(settings.timezone)
        self._days = {_DAYS.index(d.strip().lower()[:3]) for d in settings.business_days}
        self.repeat_seconds = settings.alert_repeat_minutes * 60

    # -- figures ------------------------------------------------------------------------------

    def figure(self, rule: Rule, now: float) -> Figure:
        """The figure ``rule`` compares with its threshold, as of ``now`` (epoch seconds)."""
        kind = rule.condition.kind
        if kind in ("service_level", "abandon_rate", "asa"):
            return self._call_figure(rule, now)
        if kind == "no_pushes":
            return Figure(now - self._last_push(now))
        if kind == "refused":
            return Figure(float(self._refused_since(now - rule.window_seconds)))
        if kind == "spool_age":
            status = self.sources.spool_status() if self.sources.spool_status else None
            if not status or not status.get("pending"):
                return Figure(0.0)
            return Figure(float(status.get("oldest_age_seconds") or 0.0))
        if kind == "destination_failing":
            return Figure(float(_failing_destinations(self.store)))
        if kind == "unpushed_calls":
            status = self.sources.reconcile_status() if self.sources.reconcile_status else None
            if not status or not status.get("enabled") or status.get("last_ok") is None:
                return Figure(None)  # no reconcile has run: nothing to say
            return Figure(float(status.get("last_missing") or 0))
        raise AssertionError(kind)

    def _call_figure(self, rule: Rule, now: float) -> Figure:
        # Here, not at import: the statistics load NumPy (15 MB), which a server without a
        # rule on call figures never needs.
        from cdrhub.reports import stats

        end = datetime.fromtimestamp(now, UTC)
        values: dict[str, Any] = {}
        if rule.direction:
            values["direction"] = rule.direction
        if rule.task_id:
            values["task_id"] = rule.task_id
        where = CallFilter(
            start=end - timedelta(seconds=rule.window_seconds), end=end, values=values
        )
        group = stats.compute(
            self.store,
            where,
            tz=self._zone,
            sl_seconds=self.settings.service_level_seconds,
            short_abandon_seconds=self.settings.short_abandon_seconds,
        )[0]
        queued = int(group["queued"])
        if queued < max(rule.min_calls, 1):
            return Figure(None, queued)
        name = {
            "service_level": "service_level",
            "abandon_rate": "abandon_rate",
            "asa": "asa_seconds",
        }[rule.condition.kind]
        return Figure(group[name], queued)

    def _last_push(self, now: float) -> float:
        """The last accepted push anywhere (the database) or here (the process's own view,
        which counts duplicates and spooled pushes too); the evaluator's start if none."""
        since = datetime.fromtimestamp(now - _PUSH_LOOKBACK_S, UTC)
        with self.store.read_engine.connect() as conn:
            latest = conn.execute(
                select(func.max(calls.c.last_received_at)).where(
                    calls.c.start_time >= since, calls.c.source == "push"
                )
            ).scalar()
        found = [self.started]
        if latest is not None:
            if latest.tzinfo is None:
                latest = latest.replace(tzinfo=UTC)
            found.append(latest.timestamp())
        activity = self.sources.activity
        if activity is not None and activity.last_accepted is not None:
            found.append(activity.last_accepted)
        return max(found)

    def _refused_since(self, moment: float) -> int:
        with self.store.read_engine.connect() as conn:
            stored = conn.execute(
                select(func.count())
                .select_from(quarantine)
                .where(quarantine.c.received_at >= datetime.fromtimestamp(moment, UTC))
            ).scalar_one()
        return int(stored) + self.sources.refusals.since(moment)

    def in_hours(self, rule: Rule, now: float) -> bool:
        """Whether ``now`` is within the rule's hours (or CDRHUB_BUSINESS_HOURS/_DAYS)."""
        start, end = parse_hours(rule.hours or self.settings.business_hours)
        local = datetime.fromtimestamp(now, self._zone)
        return local.weekday() in self._days and start <= local.time() <= end

    # -- transitions --------------------------------------------------------------------------

    def evaluate_once(self, now: float | None = None) -> list[Transition]:
        """Judge every active rule at ``now``; send what changed. Never raises for one rule."""
        now = time.time() if now is None else now
        done = []
        # Figures of rules whose state did not change, written together at the end: one
        # synced commit a minute for all of them, not one per rule (bench/alerts.py).
        checked: list[dict[str, Any]] = []
        for rule in all_rules(self.store):
            if rule.state != "active":
                continue
            try:
                transition = self._evaluate(rule, now, checked)
            except Exception:  # one rule's failure (its query, a plugin) never stops the rest
                log.exception("evaluating alert rule %r failed", rule.name)
                continue
            if transition is not None:
                done.append(transition)
        if checked:
            table = alert_rules.c
            try:
                with self.store.writing() as conn:
                    conn.execute(
                        update(alert_rules)
                        .where(table.id == bindparam("rule_id"))
                        .values(
                            last_value=bindparam("value"), last_checked_ms=bindparam("checked")
                        ),
                        checked,
                    )
            except Exception:  # the figures shown are a minute old; the next check writes them
                log.exception("recording the alert rules' latest figures failed")
        return done

    def _evaluate(self, rule: Rule, now: float, checked: list[dict[str, Any]]) -> Transition | None:
        figure = self.figure(rule, now)
        threshold = rule.threshold
        breached = self.in_hours(rule, now) and _breached(rule, figure.value, threshold)
        now_ms = int(now * 1000)
        table = alert_rules.c
        kind: str | None = None
        claim = update(alert_rules).where(table.id == rule.id)
        values: dict[str, Any] = {"last_value": figure.value, "last_checked_ms": now_ms}
        if breached and not rule.firing:
            kind = "firing"
            claim = claim.where(table.firing_since_ms.is_(None))
            values.update(firing_since_ms=now_ms, last_notified_ms=now_ms)
        elif (
            breached
            and rule.firing
            and self.repeat_seconds > 0
            and (now_ms - (rule.last_notified_ms or 0) >= self.repeat_seconds * 1000)
        ):
            kind = "repeat"
            claim = claim.where(table.last_notified_ms == rule.last_notified_ms)
            values.update(last_notified_ms=now_ms)
        elif not breached and rule.firing:
            kind = "resolved"
            claim = claim.where(table.firing_since_ms == rule.firing_since_ms)
            values.update(firing_since_ms=None, last_notified_ms=None)
        if kind is None:
            checked.append({"rule_id": rule.id, "value": figure.value, "checked": now_ms})
            return None
        with self.store.writing() as conn:
            claimed = conn.execute(claim.values(**values)).rowcount
        if not claimed:
            return None  # nothing changed, or another evaluator claimed this transition
        duration = None
        if kind == "resolved" and rule.firing_since_ms is not None:
            duration = (now_ms - rule.firing_since_ms) / 1000
        title, body = messages.render(
            rule, kind, figure.value, figure.calls, duration, self.settings.public_url
        )
        deliveries = notify.send(
            rule.targets,
            title,
            body,
            notify_type="success" if kind == "resolved" else "failure",
            retry_delays=self.retry_delays,
        )
        record(self.store, rule, kind, now_ms, figure.value, duration, deliveries)
        log.info("alert %s %s: %s", rule.name, kind, body.splitlines()[0])
        return Transition(rule.name, kind, figure.value, deliveries)

    def test(self, rule: Rule, now: float | None = None) -> list[notify.Delivery]:
        """Send a sample notification of ``rule`` now (its current figure), and record it."""
        now = time.time() if now is None else now
        try:
            figure = self.figure(rule, now)
        except Exception as exc:  # the sample still goes out; the figure is just unknown
            log.warning("the figure of %r could not be computed: %s", rule.name, exc)
            figure = Figure(None)
        title, body = messages.render(
            rule, "test", figure.value, figure.calls, None, self.settings.public_url
        )
        deliveries = notify.send(rule.targets, title, body, retry_delays=self.retry_delays)
        record(self.store, rule, "test", int(now * 1000), figure.value, None, deliveries)
        return deliveries


def _breached(rule: Rule, value: float | None, threshold: float | None) -> bool:
    if value is None:
        return False
    if rule.condition.kind == "no_pushes":
        return threshold is not None and value > threshold
    return rule.condition.breached(value)


def _failing_destinations(store: Store) -> int:
    """Forwarding destinations that need a person: paused, failing, or with dead letters."""
    count = 0
    for destination in destinations.all_destinations(store):
        if destination.state != "active" or destination.failing_since_ms is not None:
            count += 1
        elif history.status(store, destination)["dead"]:
            count += 1
    return count


def record(
    store: Store,
    rule: Rule,
    kind: str,
    at_ms: int,
    value: float | None,
    duration: float | None,
    deliveries: list[notify.Delivery],
) -> None:
    """One history row per target: what was sent, whether it arrived, what it answered."""
    if not deliveries:
        return
    with store.writing() as conn:
        conn.execute(
            insert(alert_history),
            [
                {
                    "rule_id": rule.id,
                    "rule_name": rule.name,
                    "condition": rule.condition.text(),
                    "kind": kind,
                    "at_ms": at_ms,
                    "value": value,
                    "threshold": rule.threshold,
                    "duration_seconds": duration,
                    "target": d.target,
                    "delivered": d.delivered,
                    "attempts": d.attempts,
                    "answer": d.answer,
                }
                for d in deliveries
            ],
        )
