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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import DBAPIError

from cdrhub import cdr
from cdrhub.errors import CdrhubError
from cdrhub.pull.imports import Tally, differs, store_records, stored_rows
from cdrhub.pull.nxcc import MAX_PAGE_SIZE, Client, NxccError, sample
from cdrhub.store import Store
from cdrhub.store.schema import backfill_checkpoints, calls

log = logging.getLogger("cdrhub.backfill")  # the name operators filter logs by; kept across moves

WINDOW_SECONDS = 3600
#: Pages a window may take before it is split: NXCC's deep pages are slow, and a window that
#: holds this many calls is better asked for in halves.
MAX_PAGES = 50
#: Pages a window that cannot be split any more (one second) may take before cdrhub gives up:
#: a gateway that never sends a short page would otherwise be asked forever.
HARD_MAX_PAGES = 1000
#: A backfill checkpoints a window only once it ended this long ago. A call appears in the
#: query API when it ends, under its start time, so the latest hour may still grow.
SETTLE_SECONDS = 3600


def windows(
    start_s: int, end_s: int, *, zone: tzinfo = UTC, size: int = WINDOW_SECONDS
) -> Iterator[tuple[int, int]]:
    """``[start_s, end_s)`` in windows that end on ``zone``'s whole hours (first, last short).

    Local hours, not UTC's: a reconcile's hours are the call center's, also in a zone such as
    Asia/Kolkata that is half an hour off UTC.
    """
    at = start_s
    while at < end_s:
        offset = zone.utcoffset(datetime.fromtimestamp(at, UTC))
        phase = int(offset.total_seconds()) % size if offset is not None else 0
        stop = min(((at - phase) // size + 1) * size + phase, end_s)
        yield at, stop
        at = stop


def pull(
    client: Client, start_s: int, end_s: int, *, max_pages: int = MAX_PAGES
) -> list[dict[str, Any]]:
    """Every record NXCC has for calls that started in ``[start_s, end_s)``, each once.

    NXCC does not say whether ``endTime`` includes its second, all of it, or none of it. The
    query therefore asks up to ``end_s`` itself and keeps only what started before it: a call
    at hh:59:59.500 is then found by one window whichever rule the gateway follows.

    A window with more than ``max_pages`` pages is split in two and each half asked for
    separately (down to one second), whether NXCC reports a total or not.
    """
    found = _pages(client, start_s, end_s, max_pages)
    if found is None:
        middle = (start_s + end_s) // 2
        log.info("window %d-%d holds too many calls: asking for it in halves", start_s, end_s)
        return pull(client, start_s, middle, max_pages=max_pages) + pull(
            client, middle, end_s, max_pages=max_pages
        )
    return _within(found, start_s, end_s)


def _pages(client: Client, start_s: int, end_s: int, max_pages: int) -> list[dict[str, Any]] | None:
    """Every page of one query, or None when the window should be asked for in halves.

    Paging stops at the first page shorter than the page size, never at the reported total:
    what the vendor calls a total is not documented (a page count would stop us early), so it
    only helps decide to split, and a disagreement is logged.
    """
    splittable = end_s - start_s > 1
    first = client.page(start_s, end_s, 1)
    if splittable and first.total is not None and first.total > max_pages * MAX_PAGE_SIZE:
        return None
    records, last, page = list(first.records), first.records, 1
    while len(last) >= MAX_PAGE_SIZE:
        page += 1
        if page > max_pages and splittable:
            return None
        if page > HARD_MAX_PAGES:
            raise NxccError(
                f"NXCC gave more than {HARD_MAX_PAGES} full pages for the one second at "
                f"{start_s}; the gateway seems not to page: {sample(last[:2])}"
            )
        current = client.page(start_s, end_s, page).records
        _refuse_repeated_page(current, last, page)
        records.extend(current)
        last = current
    if first.total is not None and first.total != len(records):
        log.warning(
            "NXCC reported a total of %d for %d-%d but its pages held %d calls; keeping the pages",
            first.total, start_s, end_s, len(records),
        )  # fmt: skip
    return records


def _refuse_repeated_page(
    current: list[dict[str, Any]], last: list[dict[str, Any]], page: int
) -> None:
    """A gateway that ignores ``page`` answers every page with the first: stop, don't loop."""
    ids = [r.get("callId") for r in current]
    if any(ids) and ids == [r.get("callId") for r in last]:
        raise NxccError(
            f"NXCC answered page {page} with the same calls as page {page - 1}: the gateway "
            f"seems to ignore `page`, so the range cannot be read completely: {sample(current[:2])}"
        )


def _within(records: list[dict[str, Any]], start_s: int, end_s: int) -> list[dict[str, Any]]:
    """The records that started in ``[start_s, end_s)``, each callId once.

    A record whose startTime cannot be read is kept: it was returned for this window, and
    storing it (or quarantining it) twice changes nothing.
    """
    low, high = start_s * 1000, end_s * 1000
    kept: list[dict[str, Any]] = []
    seen: set[str] = set()
    stray = 0
    for record in records:
        ms = _start_ms(record)
        if ms is not None and not low <= ms < high:
            # The second at ``end_s`` is asked for on purpose; anything else is unexpected.
            stray += not low <= ms < high + 1000
            continue
        call_id = record.get("callId")
        if isinstance(call_id, str) and call_id:
            if call_id in seen:
                continue
            seen.add(call_id)
        kept.append(record)
    if stray:
        log.warning(
            "NXCC returned %d calls that started outside %d-%d, the window asked for",
            stray, start_s, end_s,
        )  # fmt: skip
    return kept


def _start_ms(record: dict[str, Any]) -> int | None:
    """A record's startTime in epoch ms, when it is one (0 means absent, as in a push)."""
    value = record.get("startTime")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if type(value) is int and value > 0 else None


# -- backfill -----------------------------------------------------------------------------------


@dataclass
class Progress:
    """What a run has done so far, for a progress bar and the summary.

    The counts are the whole range's, an interrupted earlier run's included
    (``earlier_fetched`` of them). ``finished_at`` is set when the range was already complete
    and nothing was asked for; ``unsettled_from`` when the range reaches into the last
    :data:`SETTLE_SECONDS`, from which on nothing was checkpointed.
    """

    windows: int = 0
    windows_done: int = 0
    fetched: int = 0
    tally: Tally = field(default_factory=Tally)
    earlier_fetched: int = 0
    finished_at: datetime | None = None
    unsettled_from: int | None = None


def backfill(
    store: Store,
    client: Client,
    start_s: int,
    end_s: int,
    *,
    restart: bool = False,
    on_window: Callable[[Progress], None] | None = None,
    max_pages: int = MAX_PAGES,
    zone: tzinfo = UTC,
    now_s: float | None = None,
) -> Progress:
    """Pull and store every call in ``[start_s, end_s)``, resuming from the range's checkpoint.

    A range finished before is not asked for again (``restart`` does). Windows that ended less
    than :data:`SETTLE_SECONDS` before now are pulled but not checkpointed, and those not
    begun yet are skipped, so the range stays unfinished and a later run asks for them again.
    """
    now = time.time() if now_s is None else now_s
    saved = _checkpoint(store, start_s, end_s, restart)
    all_windows = list(windows(start_s, end_s, zone=zone))
    progress = Progress(windows=len(all_windows))
    progress.tally = Tally(**{k: v for k, v in saved.counts.items() if k != "fetched"})
    progress.fetched = progress.earlier_fetched = saved.counts.get("fetched", 0)
    if saved.finished_at is not None:
        progress.windows_done, progress.finished_at = len(all_windows), saved.finished_at
        return progress
    for window_start, window_end in all_windows:
        if window_end <= saved.done_until:
            progress.windows_done += 1
            continue
        if window_end > now - SETTLE_SECONDS and progress.unsettled_from is None:
            progress.unsettled_from = window_start
        if window_start < now:  # a window not begun yet cannot hold a call
            records = pull(client, window_start, window_end, max_pages=max_pages)
            progress.fetched += len(records)
            progress.tally.add(store_records(store, records, origin="nxcc"))
        progress.windows_done += 1
        if progress.unsettled_from is None:
            _save_checkpoint(store, start_s, end_s, window_end, progress, window_end >= end_s)
        if on_window is not None:
            on_window(progress)
    if not all_windows:
        _save_checkpoint(store, start_s, end_s, end_s, progress, True)
    return progress


@dataclass(frozen=True, slots=True)
class _Saved:
    """A range's checkpoint as the database holds it."""

    done_until: int
    counts: dict[str, int]
    finished_at: datetime | None = None


def _checkpoint(store: Store, start_s: int, end_s: int, restart: bool) -> _Saved:
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
            return _Saved(start_s, {})
        if restart:
            conn.execute(
                update(backfill_checkpoints)
                .where(where)
                .values(done_until=start_s, counts="{}", started_at=now, updated_at=now,
                        finished_at=None)
            )  # fmt: skip
            return _Saved(start_s, {})
        return _Saved(int(row["done_until"]), json.loads(row["counts"]), row["finished_at"])


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
    zone: tzinfo = UTC,
) -> list[Hour]:
    """Compare each hour of ``[start_s, end_s)`` and store what cdrhub lacks or has otherwise.

    Hours are ``zone``'s (the call center's); an invalid record NXCC returns is quarantined
    once, and counted in ``Hour.stored.quarantined`` at every run that sees it.
    """
    hours = []
    for window_start, window_end in windows(start_s, end_s, zone=zone):
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
        body = cdr.encode(record)
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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ReconcileStatus:
    """The scheduled reconcile's last run, for /readyz and the metrics.

    Only one process runs the schedule (see :mod:`cdrhub.leader`): ``leader`` says whether
    this one does. The one that does publishes its status to ``shared_file`` after each run,
    so that every worker of a ``serve --workers N`` shows the same last run in /readyz.
    """

    enabled: bool = False
    every_minutes: float = 0
    window_hours: float = 0
    leader: bool | None = None
    runs: int = 0
    failures: int = 0
    last_started_at: str | None = None
    last_finished_at: str | None = None
    last_success_at: str | None = None
    last_ok: bool | None = None
    last_error: str | None = None
    last_missing: int = 0
    last_different: int = 0
    last_quarantined: int = 0
    last_stored: int = 0
    total_stored: int = 0
    shared_file: Path | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        """This process's status, or, on a process that does not run the schedule, the
        status the one that does published (when it shares this machine's data directory)."""
        with self._lock:
            own = {f.name: getattr(self, f.name) for f in fields(self) if _public(f.name)}
        if own["leader"] is False and self.shared_file is not None:
            theirs = _read_status(self.shared_file)
            if theirs is not None:
                return {**own, **{k: v for k, v in theirs.items() if k in own}, "leader": False}
        return own

    def set_leader(self, leader: bool) -> None:
        with self._lock:
            self.leader = leader

    def _failed(self, error: str) -> None:
        with self._lock:
            self.runs += 1
            self.failures += 1
            self.last_ok, self.last_error = False, error
            self.last_finished_at = _now_iso()

    def run(
        self, store: Store, make_client: Callable[[], Client], now_s: int, zone: tzinfo = UTC
    ) -> None:
        """One scheduled run over the last ``window_hours``; failures are recorded, not raised."""
        start_s = now_s - int(self.window_hours * 3600)
        with self._lock:
            self.last_started_at = _now_iso()
        try:
            with make_client() as client:
                hours = reconcile(store, client, start_s, now_s, zone=zone)
        except (NxccError, CdrhubError, DBAPIError) as exc:
            log.warning("scheduled reconcile failed: %s", exc)
            self._failed(str(exc))
        except Exception as exc:  # a bug must not end the schedule: record it, try next time
            log.exception("scheduled reconcile failed unexpectedly")
            self._failed(f"unexpected error: {type(exc).__name__}: {exc}")
        else:
            self._succeeded(hours)
        self._publish()

    def _succeeded(self, hours: list[Hour]) -> None:
        stored = sum(h.stored.created + h.stored.updated for h in hours)
        with self._lock:
            self.runs += 1
            self.last_ok, self.last_error = True, None
            self.last_missing = sum(h.missing for h in hours)
            self.last_different = sum(h.different for h in hours)
            self.last_quarantined = sum(h.stored.quarantined for h in hours)
            self.last_stored = stored
            self.total_stored += stored
            self.last_finished_at = self.last_success_at = _now_iso()
        if stored:
            log.warning(
                "scheduled reconcile stored %d calls the push had missed or got otherwise", stored
            )

    def _publish(self) -> None:
        """Write the status for the other workers (atomically: they may read at any moment)."""
        if self.shared_file is None:
            return
        try:
            self.shared_file.parent.mkdir(parents=True, exist_ok=True)
            partial = self.shared_file.with_name(self.shared_file.name + ".tmp")
            partial.write_text(json.dumps(self.snapshot()))
            partial.replace(self.shared_file)
        except OSError as exc:  # the status is a courtesy to the other workers, not the run
            log.warning("could not share the reconcile status in %s: %s", self.shared_file, exc)


def _public(name: str) -> bool:
    return not name.startswith("_") and name != "shared_file"


def _read_status(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
