"""Replaying quarantined bodies: after a fix (of config, of cdrhub, of the data), store them."""

from __future__ import annotations

from dataclasses import dataclass

from cdrhub import cdr
from cdrhub.errors import BadJson, InvalidRecord
from cdrhub.store import Push, Store


@dataclass(frozen=True)
class ReplayResult:
    """What replaying one entry did: ``stored`` and the outcome, or why it still fails."""

    entry_id: int
    stored: bool
    message: str
    call_id: str | None = None


def replay(store: Store, entry_id: int) -> ReplayResult:
    """Run one quarantined body through today's validation and, if it passes, store it.

    The entry stays in the quarantine table, marked replayed, so its history is kept.
    """
    entry = store.quarantine_entry(entry_id)
    if entry is None:
        raise LookupError(f"no quarantine entry #{entry_id}")
    if entry["replayed_at"] is not None:
        return ReplayResult(entry_id, False, f"already replayed ({entry['replay_result']})")
    if not entry["body_complete"]:
        return ReplayResult(
            entry_id, False, "body was cut at the size limit when it arrived; it cannot be stored"
        )
    try:
        record = cdr.parse(entry["body"])
    except (BadJson, InvalidRecord) as error:
        problems = "; ".join(f"{p.field}={p.value!r} (expected {p.expected})" for p in error.fields)
        return ReplayResult(entry_id, False, f"still refused: {error.detail} {problems}".strip())
    outcome = store.save(Push(record, entry["body"], source="replay"))
    store.mark_replayed(entry_id, outcome)
    return ReplayResult(entry_id, True, outcome, record.call_id)


def replay_all(store: Store) -> list[ReplayResult]:
    """Replay every entry not replayed yet, oldest first."""
    pending = store.quarantined(limit=1_000_000)
    return [replay(store, entry["id"]) for entry in reversed(pending)]
