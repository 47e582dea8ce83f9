"""One call's facts, by the rules of docs/metrics.md: what the call detail and forwarded events
show of it (wait, speed of answer, talk, abandoned...).

Apart from :mod:`cdrhub.reports.stats`, which computes the same facts over many calls with
NumPy: a server that forwards pushes renders these for every event, and must not load NumPy
(15 MB) for them. ``columns.from_rows`` applies the same rules to many calls at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class CallFacts(NamedTuple):
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
) -> CallFacts:
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
    return CallFacts(is_answered, queued, wait, abandoned, short, soa, talk)


def row_facts(row: Mapping[str, Any], short_abandon_seconds: float) -> CallFacts:
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
