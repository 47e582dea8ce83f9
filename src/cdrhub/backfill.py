"""Filling and healing the database from NXCC's query API: backfill and reconcile.

NXCC gives up on a push after about an hour, so an outage longer than that loses calls for
good unless they are pulled back. Both operations walk a time range in windows of one hour
(the query API pages at most 100 records, so a busy window is split in halves until its
pages fit) and store what they pull through :func:`cdrhub.imports.store_records`, the same
path as a push: nothing is ever counted twice.

``backfill`` stores everything in a range and saves a checkpoint after each window, so an
interrupted run resumes. ``reconcile`` compares each hour with what cdrhub holds and stores
only the calls that are missing or different; ``serve`` can run it on a schedule.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import DBAPIError

from cdrhub import cdr
from cdrhub.errors import CdrhubError
from cdrhub.imports import Tally, differs, store_records, stored_rows
from cdrhub.nxcc import MAX_PAGE_SIZE, Client, NxccError
from cdrhub.store import Store
from cdrhub.store.schema import backfill_checkpoints, calls

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600
#: Pages a window may take before it is split: NXCC's deep pages are slow, and a window that
#: holds this many calls is better asked for in halves.
MAX_PAGES = 50


def windows(start_s: int, end_s: int, size: int = WINDOW_SECONDS) -> Iterator[tuple[int, int]]:
    """``[start_s, end_s)`` in windows aligned on UTC hours (the first and last may be short)."""
    at = start_s
    while at < end_s:
        stop = min((at // size + 1) * size, end_s)
        yield at, stop
        at = stop


def pull(
    client: Client, start_s: int, end_s: int, *, max_pages: int = MAX_PAGES
) -> list[dict[str, Any]]:
    """Every record NXCC has for calls that started in ``[start_s, end_s)``.

    A window with more than ``max_pages`` pages is split in two and each half asked for
    separately (down to one second), whether NXCC reports a total or not.
    """
    first = client.page(start_s, end_s - 1, 1)
    too_many = first.total is not None and first.total > max_pages * MAX_PAGE_SIZE
    if too_many and end_s - start_s > 1:
        return _halves(client, start_s, end_s, max_pages)
    records = list(first.records)
    page = 1
    while len(records) == page * MAX_PAGE_SIZE and (
        first.total is None or len(records) < first.total
    ):
        page += 1
        if page > max_pages and end_s - start_s > 1:
            return _halves(client, start_s, end_s, max_pages)
        records.extend(client.page(start_s, end_s - 1, page).records)
    return records


def _halves(client: Client, start_s: int, end_s: int, max_pages: int) -> list[dict[str, Any]]:
    middle = (start_s + end_s) // 2
    log.info("window %d-%d holds too many calls: asking for it in halves", start_s, end_s)
    return pull(client, start_s, middle, max_pages=max_pages) + pull(
        client, middle, end_s, max_pages=max_pages
    )


# -- backfill -----------------------------------------------------------------------------------


@dataclass
class Progress:
    """What a run has done so far, for a progress bar."""

    windows: int = 0
    windows_done: int = 0
    fetched: int = 0
    tally: Tally = field(default_factory=Tally)


def backfill(
    store: Store,
    client: Client,
    start_s: int,
    end_s: int,
    *,
    restart: bool = False,
    on_window: Callable[[Progress], None] | None = None,
    max_pages: int = MAX_PAGES,
) -> Progress:
    """Pull and store every call in ``[start_s, end_s)``, resuming from the range's checkpoint."""
    done_until, counts = _checkpoint(store, start_s, end_s, restart)
    all_windows = list(windows(start_s, end_s))
    progress = Progress(windows=len(all_windows))
    progress.tally = Tally(**{k: v for k, v in counts.items() if k != "fetched"})
    progress.fetched = counts.get("fetched", 0)
    for window_start, window_end in all_windows:
        if window_end <= done_until:
            progress.windows_done += 1
            continue
        records = pull(client, window_start, window_end, max_pages=max_pages)
        progress.fetched += len(records)
        progress.tally.add(store_records(store, records, origin="nxcc"))
        progress.windows_done += 1
        _save_checkpoint(store, start_s, end_s, window_end, progress, window_end >= end_s)
        if on_window is not None:
            on_window(progress)
    if not all_windows or done_until >= end_s:
        _save_checkpoint(store, start_s, end_s, end_s, progress, True)
    return progress


def _checkpoint(
    store: Store, start_s: int, end_s: int, restart: bool
) -> tuple[int, dict[str, int]]:
    """Where a previous run of this exact range stopped (its start if none, or ``restart``)."""
    where = and_(
        backfill_checkpoints.c.range_start == start_s, backfill_checkpoints.c.range_end == end_s
    )
    now = datetime.now(UTC)
    with store.writing() as conn:
        row = conn.execute(select(backfill_checkpoints).where(where)).mappings().first()
        if row is None:
            conn.execute(
                insert(backfill_checkpoints).values(
                    range_start=start_s, range_end=end_s, done_until=start_s, counts="{}",
                    started_at=now, updated_at=now,
                )
            )  # fmt: skip
            return start_s, {}
        if restart:
            conn.execute(
                update(backfill_checkpoints)
                .where(where)
                .values(done_until=start_s, counts="{}", started_at=now, updated_at=now,
                        finished_at=None)
            )  # fmt: skip
            return start_s, {}
        return int(row["done_until"]), json.loads(row["counts"])


def _save_checkpoint(
    store: Store, start_s: int, end_s: int, done_until: int, progress: Progress, finished: bool
) -> None:
    now = datetime.now(UTC)
    counts = {"fetched": progress.fetched, **progress.tally.as_dict()}
    with store.writing() as conn:
        conn.execute(
            update(backfill_checkpoints)
            .where(backfill_checkpoints.c.range_start == start_s)
            .where(backfill_checkpoints.c.range_end == end_s)
            .values(done_until=done_until, counts=json.dumps(counts), updated_at=now,
                    finished_at=now if finished else None)
        )  # fmt: skip


def checkpoints(store: Store) -> list[dict[str, Any]]:
    """Every backfill range run so far, newest first."""
    query = select(backfill_checkpoints).order_by(backfill_checkpoints.c.updated_at.desc())
    with store.read_engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


# -- reconcile ----------------------------------------------------------------------------------


@dataclass
class Hour:
    """One hour compared: what NXCC has, what cdrhub had, and what was stored to heal it."""

    start_s: int
    nxcc: int = 0
    cdrhub: int = 0
    missing: int = 0
    different: int = 0
    only_here: int = 0
    stored: Tally = field(default_factory=Tally)


def reconcile(
    store: Store,
    client: Client,
    start_s: int,
    end_s: int,
    *,
    on_hour: Callable[[Hour], None] | None = None,
    max_pages: int = MAX_PAGES,
) -> list[Hour]:
    """Compare each hour of ``[start_s, end_s)`` and store what cdrhub lacks or has otherwise."""
    hours = []
    for window_start, window_end in windows(start_s, end_s):
        hour = _reconcile_hour(store, client, window_start, window_end, max_pages)
        hours.append(hour)
        if on_hour is not None:
            on_hour(hour)
    return hours


def _reconcile_hour(store: Store, client: Client, start_s: int, end_s: int, max_pages: int) -> Hour:
    records = pull(client, start_s, end_s, max_pages=max_pages)
    ours = _stored_ids(store, start_s, end_s)
    hour = Hour(start_s, nxcc=len(records), cdrhub=len(ours))
    parsed: list[tuple[dict[str, Any], cdr.CallRecord | None]] = []
    for record in records:
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            parsed.append((record, cdr.parse(body)))
        except CdrhubError:
            parsed.append((record, None))  # stored below, it is quarantined for an operator
    rows = stored_rows(store, (p.call_id for _, p in parsed if p is not None))
    wanted = []
    for record, call in parsed:
        if call is None:
            wanted.append(record)
        elif call.call_id not in rows:
            hour.missing += 1
            wanted.append(record)
        elif differs(call, rows[call.call_id]):
            hour.different += 1
            wanted.append(record)
    hour.only_here = len(ours - {c.call_id for _, c in parsed if c is not None})
    hour.stored = store_records(store, wanted, origin="nxcc")
    return hour


def _stored_ids(store: Store, start_s: int, end_s: int) -> set[str]:
    """The callIds cdrhub has starting in the window."""
    start = datetime.fromtimestamp(start_s, UTC)
    end = datetime.fromtimestamp(end_s, UTC)
    query = select(calls.c.call_id).where(calls.c.start_time >= start, calls.c.start_time < end)
    with store.read_engine.connect() as conn:
        return {r[0] for r in conn.execute(query)}


# -- on a schedule, inside serve ------------------------------------------------------------------


@dataclass
class ReconcileStatus:
    """The scheduled reconcile's last run, for /readyz and the metrics."""

    enabled: bool = False
    every_minutes: float = 0
    window_hours: float = 0
    runs: int = 0
    last_started_at: str | None = None
    last_finished_at: str | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    last_missing: int = 0
    last_different: int = 0
    last_stored: int = 0
    total_stored: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name[0] != "_"}

    def _failed(self, error: str) -> None:
        with self._lock:
            self.runs += 1
            self.last_ok, self.last_error = False, error
            self.last_finished_at = datetime.now(UTC).isoformat(timespec="seconds")

    def run(self, store: Store, make_client: Callable[[], Client], now_s: int) -> None:
        """One scheduled run over the last ``window_hours``; failures are recorded, not raised."""
        start_s = now_s - int(self.window_hours * 3600)
        with self._lock:
            self.last_started_at = datetime.now(UTC).isoformat(timespec="seconds")
        try:
            with make_client() as client:
                hours = reconcile(store, client, start_s, now_s)
        except (NxccError, CdrhubError, DBAPIError) as exc:
            log.warning("scheduled reconcile failed: %s", exc)
            self._failed(str(exc))
            return
        except Exception as exc:  # a bug must not end the schedule: record it, try next time
            log.exception("scheduled reconcile failed unexpectedly")
            self._failed(f"unexpected error: {type(exc).__name__}: {exc}")
            return
        stored = sum(h.stored.created + h.stored.updated for h in hours)
        with self._lock:
            self.runs += 1
            self.last_ok, self.last_error = True, None
            self.last_missing = sum(h.missing for h in hours)
            self.last_different = sum(h.different for h in hours)
            self.last_stored = stored
            self.total_stored += stored
            self.last_finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        if stored:
            log.warning(
                "scheduled reconcile stored %d calls the push had missed or got otherwise", stored
            )
