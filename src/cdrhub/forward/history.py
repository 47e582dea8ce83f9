"""What happened to a destination's events, and sending them again.

``attempts`` and ``dead_letters`` are what ``cdrhub forward attempts``, the API and the
Destinations page show; ``replay`` and ``retry_dead`` put existing events back in line (the
same event ids, so consumers recognise what they already have); ``prune`` keeps the outbox
and the attempt log to their configured age.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import and_, delete, func, select, update

from cdrhub.forward import filters
from cdrhub.forward.deliverer import oldest_undelivered_ms, waiting_row
from cdrhub.forward.destinations import Destination, all_destinations, mask_text, require
from cdrhub.forward.events import Event
from cdrhub.store import Store
from cdrhub.store.schema import destinations, events, forward_attempts, forward_pending, raw_pushes


def _now_ms() -> int:
    return int(time.time() * 1000)


def attempts(
    store: Store, destination: Destination, *, failed_only: bool = False, limit: int = 50
) -> list[dict[str, Any]]:
    """The newest attempts first (time, event, status, latency, error, response excerpt)."""
    query = (
        select(forward_attempts)
        .where(forward_attempts.c.destination_id == destination.id)
        .order_by(forward_attempts.c.id.desc())
        .limit(limit)
    )
    if failed_only:
        query = query.where(forward_attempts.c.ok.is_(False))
    with store.read_engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["error"] = mask_text(row["error"], destination)
        row["response"] = mask_text(row["response"], destination)
    return rows


def dead_letters(
    store: Store, destination: Destination, *, limit: int = 100
) -> list[dict[str, Any]]:
    """Events every attempt failed for, newest first, with the last status and error."""
    query = (
        select(
            forward_pending.c.event_seq,
            events.c.id.label("event_id"),
            events.c.type,
            forward_pending.c.call_id,
            forward_pending.c.attempts,
            forward_pending.c.last_status,
            forward_pending.c.last_error,
            forward_pending.c.last_response,
            forward_pending.c.updated_at_ms,
        )
        .select_from(forward_pending.join(events, events.c.seq == forward_pending.c.event_seq))
        .where(
            forward_pending.c.destination_id == destination.id, forward_pending.c.state == "dead"
        )
        .order_by(forward_pending.c.event_seq.desc())
        .limit(limit)
    )
    with store.read_engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(query).mappings()]
    for row in rows:
        row["last_error"] = mask_text(row["last_error"], destination)
        row["last_response"] = mask_text(row["last_response"], destination)
    return rows


def status(store: Store, destination: Destination) -> dict[str, Any]:
    """Counts and lag: what a person checks first (``forward show``, the page, /metrics)."""
    with store.read_engine.connect() as conn:
        counts = dict(
            conn.execute(
                select(forward_pending.c.state, func.count())
                .where(forward_pending.c.destination_id == destination.id)
                .group_by(forward_pending.c.state)
            ).all()
        )
        behind = conn.execute(
            select(func.count()).where(events.c.seq > destination.cursor_seq)
        ).scalar_one()
    oldest = oldest_undelivered_ms(store, destination)
    return {
        "waiting": int(counts.get("retry", 0)) + int(behind),
        "retrying": int(counts.get("retry", 0)),
        "dead": int(counts.get("dead", 0)),
        "lag_seconds": max(0.0, (_now_ms() - oldest) / 1000) if oldest is not None else 0.0,
    }


def forwarding_status(store: Store) -> list[dict[str, Any]]:
    """Every destination's name, state, last success and error, with its :func:`status`."""
    return [
        {
            "name": d.name,
            "state": d.state,
            "paused_reason": mask_text(d.paused_reason, d),
            "last_success_at_ms": d.last_success_at_ms,
            "last_error": mask_text(d.last_error, d),
            "last_error_at_ms": d.last_error_at_ms,
            **status(store, d),
        }
        for d in all_destinations(store)
    ]


def retry_dead(store: Store, destination: Destination) -> int:
    """Put every dead letter back in line for an attempt now; returns how many."""
    with store.writing() as conn:
        return int(
            conn.execute(
                update(forward_pending)
                .where(
                    forward_pending.c.destination_id == destination.id,
                    forward_pending.c.state == "dead",
                )
                .values(state="retry", attempts=0, next_attempt_ms=_now_ms())
            ).rowcount
        )


def replay(
    store: Store,
    name: str,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    call_filter: str | None = None,
    event_types: tuple[str, ...] | None = None,
) -> int:
    """Send again the events stored in ``[start_ms, end_ms)`` (same ids); returns how many.

    Only events the destination already had its turn at (up to its cursor) are replayed;
    later ones are on their way anyway. Events already waiting keep their place.
    """
    destination = require(store, name)
    parsed = filters.parse(call_filter)
    types = event_types or destination.events
    query = (
        select(events.c.seq, events.c.call_id, events.c.type, raw_pushes.c.body)
        .select_from(
            events.join(
                raw_pushes,
                and_(
                    raw_pushes.c.call_id == events.c.call_id,
                    raw_pushes.c.content_hash == events.c.content_hash,
                ),
            )
        )
        .where(events.c.seq <= destination.cursor_seq, events.c.type.in_(types))
        .order_by(events.c.seq)
    )
    if start_ms is not None:
        query = query.where(events.c.created_at_ms >= start_ms)
    if end_ms is not None:
        query = query.where(events.c.created_at_ms < end_ms)
    now = _now_ms()
    with store.read_engine.connect() as conn:
        waiting = {
            r[0]
            for r in conn.execute(
                select(forward_pending.c.event_seq).where(
                    forward_pending.c.destination_id == destination.id
                )
            )
        }
        chosen = []
        for row in conn.execute(query):
            if row.seq in waiting:
                continue
            event = Event(row.seq, "", row.type, row.call_id, "", 0, bytes(row.body))
            if parsed.text and event.values is not None and not parsed.matches(event.values):
                continue
            chosen.append(waiting_row(destination.id, event, now))
    if chosen:
        with store.writing() as conn:
            for start in range(0, len(chosen), 1000):
                conn.execute(forward_pending.insert(), chosen[start : start + 1000])
    return len(chosen)


def prune(store: Store, *, keep_days: float, attempts_keep_days: float) -> dict[str, int]:
    """Delete events delivered everywhere and older than ``keep_days``, and old attempts.

    An event is kept while any destination has not had its turn at it (its cursor is before
    it) or still holds it as pending or dead.
    """
    now = _now_ms()
    with store.writing() as conn:
        lowest = conn.execute(select(func.min(destinations.c.cursor_seq))).scalar_one()
        held = select(forward_pending.c.event_seq)
        query = delete(events).where(
            events.c.created_at_ms < now - int(keep_days * 86_400_000),
            events.c.seq.not_in(held),
        )
        if lowest is not None:
            query = query.where(events.c.seq <= lowest)
        removed = conn.execute(query).rowcount
        old = conn.execute(
            delete(forward_attempts).where(
                forward_attempts.c.at_ms < now - int(attempts_keep_days * 86_400_000)
            )
        ).rowcount
    return {"events": int(removed), "attempts": int(old)}
