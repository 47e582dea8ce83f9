"""Call-center statistics: each metric of docs/metrics.md, computed one way everywhere.

The per-call facts (wait, speed of answer, talk, abandoned...) are derived by
:func:`call_facts`, which the call detail endpoint shows too, so a number in a report can be
traced to the calls behind it. Aggregation runs in Python over the selected rows, streamed:
time buckets come from the epoch milliseconds through ``zoneinfo``, so day and hour
boundaries are the call center's, DST included, identically on SQLite and PostgreSQL, and
percentiles are exact (``percentile_cont``'s linear interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import select

from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.query import CallFilter
from cdrhub.store import Store
from cdrhub.store.schema import calls

#: Every metric, in the order the API and the CLI show them.
METRICS: tuple[str, ...] = (
    "calls",
    "answered",
    "queued",
    "abandoned",
    "short_abandoned",
    "answer_rate",
    "abandon_rate",
    "service_level",
    "asa_seconds",
    "avg_wait_seconds",
    "p90_wait_seconds",
    "talk_seconds",
    "avg_talk_seconds",
    "p90_talk_seconds",
    "avg_ring_seconds",
    "cost_total",
    "cost_per_answered_minute",
)

TIME_GROUPS = ("hour", "day", "week", "month")
#: Groupable call attributes: their key name and column (camelCase names are accepted too).
FIELD_GROUPS = {
    "direction": calls.c.direction,
    "agent": calls.c.agent_name,
    "task_id": calls.c.task_id,
    "intent": calls.c.intent,
    "hangup_by": calls.c.hangup_by,
    "hangup_reason": calls.c.hangup_reason,
}
_ALIASES = {
    "taskid": "task_id",
    "hangupby": "hangup_by",
    "hangupreason": "hangup_reason",
    "agentname": "agent",
}


class Facts(NamedTuple):
    """What one call contributes; ``None`` where the data does not say."""

    answered: bool
    queued: bool
    wait_seconds: float | None
    abandoned: bool
    short_abandoned: bool
    speed_of_answer_seconds: float | None
    talk_seconds: float | None


def call_facts(
    answered: bool | None,
    in_queue_ms: int | None,
    out_queue_ms: int | None,
    answer_ms: int | None,
    end_ms: int | None,
    queue_duration: int | None,
    short_abandon_seconds: float,
) -> Facts:
    """Derive a call's facts from its fields, exactly as docs/metrics.md defines them."""
    is_answered = answered is True
    queued = in_queue_ms is not None
    wait: float | None = None
    soa: float | None = None
    if queued:
        left = out_queue_ms if out_queue_ms is not None else answer_ms
        left = left if left is not None else end_ms
        if left is not None:
            wait = (left - in_queue_ms) / 1000  # type: ignore[operator]
        elif queue_duration is not None:
            wait = float(queue_duration)
        if is_answered and answer_ms is not None:
            soa = (answer_ms - in_queue_ms) / 1000  # type: ignore[operator]
    abandoned = queued and not is_answered
    short = abandoned and wait is not None and wait < short_abandon_seconds
    talk = (end_ms - answer_ms) / 1000 if is_answered and None not in (answer_ms, end_ms) else None  # type: ignore[operator]
    return Facts(is_answered, queued, wait, abandoned, short, soa, talk)


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's ``percentile_cont``."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class _Totals:
    calls: int = 0
    answered: int = 0
    queued: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    within_sl: int = 0
    soa: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    talks: list[float] = field(default_factory=list)
    ring_sum: int = 0
    ring_count: int = 0
    costs: list[float] = field(default_factory=list)

    def add(self, facts: Facts, ring: int | None, cost: float | None, sl_seconds: float) -> None:
        self.calls += 1
        self.answered += facts.answered
        self.queued += facts.queued
        self.abandoned += facts.abandoned
        self.short_abandoned += facts.short_abandoned
        if facts.wait_seconds is not None:
            self.waits.append(facts.wait_seconds)
        if facts.speed_of_answer_seconds is not None:
            self.soa.append(facts.speed_of_answer_seconds)
            self.within_sl += facts.speed_of_answer_seconds <= sl_seconds
        if facts.talk_seconds is not None:
            self.talks.append(facts.talk_seconds)
        if ring is not None:
            self.ring_sum += ring
            self.ring_count += 1
        if cost is not None:
            self.costs.append(cost)

    def metrics(self) -> dict[str, Any]:
        eligible = self.queued - self.short_abandoned
        talk = math.fsum(self.talks)
        cost = math.fsum(self.costs)
        return {
            "calls": self.calls,
            "answered": self.answered,
            "queued": self.queued,
            "abandoned": self.abandoned,
            "short_abandoned": self.short_abandoned,
            "answer_rate": _ratio(self.answered, self.calls),
            "abandon_rate": _ratio(self.abandoned - self.short_abandoned, eligible),
            "service_level": _ratio(self.within_sl, eligible),
            "asa_seconds": _mean(self.soa),
            "avg_wait_seconds": _mean(self.waits),
            "p90_wait_seconds": percentile(self.waits, 0.9),
            "talk_seconds": talk,
            "avg_talk_seconds": _mean(self.talks),
            "p90_talk_seconds": percentile(self.talks, 0.9),
            "avg_ring_seconds": _ratio(self.ring_sum, self.ring_count),
            "cost_total": cost,
            "cost_per_answered_minute": _ratio(cost, talk / 60),
        }


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


# -- grouping -----------------------------------------------------------------------------------


def parse_group_by(value: str | None) -> tuple[str, ...]:
    """``day,agent`` to ``("day", "agent")``; at most one time bucket, no repeats."""
    if value in (None, "", "none"):
        return ()
    assert value is not None
    names: list[str] = []
    for part in value.split(","):
        word = part.strip()
        name = _ALIASES.get(word.lower(), word.lower())
        if name not in TIME_GROUPS and name not in FIELD_GROUPS:
            allowed = ", ".join((*TIME_GROUPS, *FIELD_GROUPS))
            raise InvalidParameter(
                "invalid value for group_by",
                [FieldProblem("group_by", value, f"none, or a comma-separated list of {allowed}")],
            )
        if name in names:
            raise InvalidParameter(
                "invalid value for group_by",
                [FieldProblem("group_by", value, f"{name} only once")],
            )
        names.append(name)
    if sum(n in TIME_GROUPS for n in names) > 1:
        raise InvalidParameter(
            "invalid value for group_by",
            [FieldProblem("group_by", value, "at most one of hour, day, week, month")],
        )
    return tuple(names)


def bucketer(unit: str, tz: ZoneInfo) -> Callable[[int | None], str | None]:
    """Epoch ms to the local bucket it falls in, as a string key.

    ``hour`` keys carry the UTC offset (``2026-11-01T01:00-04:00``): on the night clocks go
    back, the two local 01:00 hours are different hours. Results are cached per UTC minute
    (zone offsets are whole minutes), which makes a million calls cheap to bucket.
    """
    cache: dict[int, str] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    def label(moment: datetime) -> str:
        if unit == "hour":
            return moment.strftime("%Y-%m-%dT%H:00") + _offset(moment)
        if unit == "day":
            return moment.date().isoformat()
        if unit == "week":  # ISO weeks: the key is the Monday
            return (moment.date() - timedelta(days=moment.weekday())).isoformat()
        return moment.strftime("%Y-%m")

    def key(ms: int | None) -> str | None:
        if ms is None:
            return None
        minute = ms // 60_000
        found = cache.get(minute)
        if found is None:
            found = cache[minute] = label((epoch + timedelta(minutes=minute)).astimezone(tz))
        return found

    return key


def _offset(moment: datetime) -> str:
    text = moment.strftime("%z")  # +0800
    return f"{text[:3]}:{text[3:]}"


# -- the query ------------------------------------------------------------------------------------

_FACT_COLUMNS = (
    calls.c.answered,
    calls.c.in_queue_time_ms,
    calls.c.out_queue_time_ms,
    calls.c.answer_time_ms,
    calls.c.end_time_ms,
    calls.c.queue_duration,
    calls.c.ring_duration,
    calls.c.total_customer_price,
    calls.c.start_time_ms,
)


def compute(
    store: Store,
    where: CallFilter,
    *,
    group_by: Iterable[str] = (),
    tz: ZoneInfo,
    sl_seconds: float,
    short_abandon_seconds: float,
) -> list[dict[str, Any]]:
    """Every metric per group: ``[{"key": {...}, "calls": ..., ...}]``, groups sorted by key.

    Without grouping there is exactly one group, ``key`` ``{}``, even over no calls (its counts
    are 0 and its ratios and means null). With grouping, only groups that have calls appear.
    """
    names = tuple(group_by)
    extractors: list[Callable[[Mapping[str, Any]], Any]] = []
    columns = list(_FACT_COLUMNS)
    for name in names:
        if name in TIME_GROUPS:
            bucket = bucketer(name, tz)
            extractors.append(lambda row, b=bucket: b(row["start_time_ms"]))
        else:
            column = FIELD_GROUPS[name]
            columns.append(column)
            extractors.append(lambda row, c=column.name: row[c])
    groups: dict[tuple[Any, ...], _Totals] = {}
    if not names:
        groups[()] = _Totals()
    query = select(*columns).where(*where.conditions())
    with store.read_engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
        for row in result.mappings():
            key = tuple(extract(row) for extract in extractors)
            totals = groups.get(key)
            if totals is None:
                totals = groups[key] = _Totals()
            facts = row_facts(row, short_abandon_seconds)
            totals.add(facts, row["ring_duration"], row["total_customer_price"], sl_seconds)
    ordered = sorted(groups.items(), key=lambda item: [(v is None, v) for v in item[0]])
    return [
        {"key": dict(zip(names, key, strict=True)), **totals.metrics()} for key, totals in ordered
    ]


def row_facts(row: Mapping[str, Any], short_abandon_seconds: float) -> Facts:
    """:func:`call_facts` of a stored ``calls`` row (what stats and the call detail share)."""
    return call_facts(
        row["answered"],
        row["in_queue_time_ms"],
        row["out_queue_time_ms"],
        row["answer_time_ms"],
        row["end_time_ms"],
        row["queue_duration"],
        short_abandon_seconds,
    )


def derived_fields(row: Mapping[str, Any], short_abandon_seconds: float) -> dict[str, Any]:
    """A call's facts as the call detail shows them (plus readable direction and hangup side)."""
    from cdrhub.cdr import DIRECTIONS, HANGUP_BY

    facts = row_facts(row, short_abandon_seconds)
    return {
        **facts._asdict(),
        "ring_seconds": row["ring_duration"],
        "direction_name": DIRECTIONS.get(row["direction"]),
        "hangup_by_name": HANGUP_BY.get(row["hangup_by"]),
    }
