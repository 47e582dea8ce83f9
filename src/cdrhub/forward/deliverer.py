"""Delivering the outbox: at least once, per call in order, retried, dead-lettered, visible.

One worker task per active destination, in whichever process holds that destination's lease
(a row in ``destinations``, renewed every round), so several receivers on one PostgreSQL, or
``serve --workers N`` on SQLite, deliver each event from one place at a time.

A round of a worker:

1. takes the next window of events past the destination's cursor, and the pending events
   that are due (a retry whose wait is over, or an event that waited behind an older
   version of its call);
2. skips what the destination's event types and filter do not want;
3. sends, with the destination's concurrency and rate: different calls at once, the
   versions of one call one after the other. A version never goes before an older version
   of its call that is still waiting (a dead older version no longer holds it back);
4. records, in one transaction: every attempt, the events that failed (with their next
   attempt from the retry schedule, or dead), the events that must wait, the cursor moved
   past the window, and the destination's last success or error. 410 pauses the
   destination; failing every attempt for ``CDRHUB_FORWARD_AUTO_PAUSE_HOURS`` pauses it too.

A process killed between sending and step 4 sends that window again after restart: the same
event ids, in the same order, which is what "at least once" promises. The restarted process
does not wait for the dead one's lease to run out: an owner names its host, pid and where
that pid means something (boot and pid namespace), so a lease held by a pid that no longer
exists on this machine is taken over at once (see :func:`_dead_here`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, insert, select, update

from cdrhub.forward import brokers, schedule
from cdrhub.forward.destinations import Destination, _row, mask_text
from cdrhub.forward.events import Event, Renderer
from cdrhub.forward.sinks import AddressGuard, HttpSink, Result, Sink
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import destinations, events, forward_attempts, forward_pending, raw_pushes

log = logging.getLogger("cdrhub.forward")

LEASE_MS = 120_000  # longer than any round: ROUND_SECONDS of starts + one attempt (<= 60 s)
WINDOW = 500
ROUND_SECONDS = 10.0  # no new sends start after this; the rest wait for the next round
IDLE_SECONDS = 0.25  # poll for events stored by other processes; our own writes wake us


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Pending:
    """An event waiting for a destination (a ``forward_pending`` row), with the event."""

    event: Event
    attempts: int


@dataclass
class Tally:
    """What this process delivered, per destination, for ``/metrics``."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0
    latencies: list[float] = field(default_factory=list)


class _Bucket:
    """A token bucket: at most ``rate`` sends a second, bursts of one second's worth."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.tokens = rate or 0.0
        self.at = time.monotonic()

    async def take(self) -> None:
        if not self.rate:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


class Deliverer:
    """Runs the destination workers of this process until stopped."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        owner: str | None = None,
        on_result: Callable[[Destination, Event, Result, float], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner or f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_PLACE}"
        self.schedule = schedule.parse(settings.forward_retry_schedule)
        self.renderer = Renderer(settings.timezone, settings.short_abandon_seconds)
        self.guard = AddressGuard(settings.forward_networks)
        self.auto_pause_ms = int(settings.forward_auto_pause_hours * 3_600_000)
        self.on_result = on_result
        self.tallies: dict[str, Tally] = defaultdict(Tally)
        self._postgres = store.write_engine.dialect.name == "postgresql"
        # Per destination: a missing seq -> the next transaction id when it was first seen.
        self._gaps: dict[int, dict[int, int]] = defaultdict(dict)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- waking ------------------------------------------------------------------------------

    def wake(self) -> None:
        """New events were committed: look now rather than at the next poll (any thread)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _idle(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return

    # -- the supervisor ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one worker per active destination until ``stop`` is set."""
        self._loop = asyncio.get_running_loop()
        workers: dict[int, asyncio.Task[None]] = {}
        try:
            while not stop.is_set():
                try:
                    active = await asyncio.to_thread(self._active_ids)
                except Exception as exc:
                    log.warning("forwarding: cannot read destinations: %s", exc)
                    active = set(workers)
                for dest_id in active - set(workers):
                    workers[dest_id] = asyncio.create_task(self._worker(dest_id, stop))
                for dest_id in set(workers) - active:
                    workers.pop(dest_id).cancel()
                for dest_id, task in list(workers.items()):
                    if task.done():
                        workers.pop(dest_id)
                        if not task.cancelled() and task.exception() is not None:
                            log.error("forwarding worker failed", exc_info=task.exception())
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            # Let rounds in flight finish and record what they sent (else those events are
            # sent again after the restart: allowed, but avoidable); idle workers wake and stop.
            self._wake.set()
            if workers:
                _, late = await asyncio.wait(workers.values(), timeout=ROUND_SECONDS + 5)
                for task in late:
                    task.cancel()
                await asyncio.gather(*workers.values(), return_exceptions=True)
            await asyncio.to_thread(self._release_all)

    def _active_ids(self) -> set[int]:
        with self.store.read_engine.connect() as conn:
            query = select(destinations.c.id).where(destinations.c.state == "active")
            return {int(r[0]) for r in conn.execute(query)}

    def _release_all(self) -> None:
        try:
            with self.store.writing() as conn:
                conn.execute(
                    update(destinations)
                    .where(destinations.c.lease_owner == self.owner)
                    .values(lease_owner=None, lease_until_ms=None)
                )
        except Exception as exc:
            log.warning("forwarding: could not release leases: %s", exc)

    # -- one destination ---------------------------------------------------------------------

    async def _worker(self, dest_id: int, stop: asyncio.Event) -> None:
        sink: Sink | None = None
        config: tuple[Any, ...] | None = None
        try:
            while not stop.is_set():
                try:
                    destination = await asyncio.to_thread(self._claim, dest_id)
                except Exception as exc:
                    log.warning("forwarding: cannot claim destination %s: %s", dest_id, exc)
                    await self._idle(2.0)
                    continue
                if destination is None:  # paused, removed, or another process delivers it
                    await self._idle(10.0)
                    continue
                wanted = _config(destination)
                if sink is None or wanted != config:
                    if sink is not None:
                        await sink.close()
                    sink, config = make_sink(destination, self.renderer, self.guard), wanted
                self._wake.clear()
                try:
                    worked = await self.deliver_round(destination, sink)
                except _LostLease:
                    worked = False
                except Exception as exc:
                    log.warning("forwarding to %s: round failed: %s", destination.name, exc)
                    await self._idle(2.0)
                    continue
                if not worked:
                    await self._idle(IDLE_SECONDS)
        finally:
            if sink is not None:
                await sink.close()

    def _claim(self, dest_id: int) -> Destination | None:
        """Take or renew the lease; the destination when this process delivers it now.

        A lease of ours with more than half its time left is only read: each round's record
        renews it, and a write here would be a synced commit before every round, in the
        queue of the push path's writer (on SQLite, the same single writer).
        """
        now = now_ms()
        with self.store.read_engine.connect() as conn:
            row = conn.execute(select(destinations).where(destinations.c.id == dest_id))
            current = row.mappings().first()
        if current is None or current["state"] != "active":
            return None
        if current["lease_owner"] == self.owner and (
            (current["lease_until_ms"] or 0) - now > LEASE_MS // 2
        ):
            return _row(current)
        owner = destinations.c.lease_owner
        with self.store.writing() as conn:
            free = owner.is_(None) | (owner == self.owner) | (destinations.c.lease_until_ms < now)
            holder = conn.execute(select(owner).where(destinations.c.id == dest_id)).scalar()
            if holder and holder != self.owner and _dead_here(holder):
                free |= owner == holder  # compare-and-set: only if that dead owner still holds it
            claimed = conn.execute(
                update(destinations)
                .where(destinations.c.id == dest_id, destinations.c.state == "active", free)
                .values(lease_owner=self.owner, lease_until_ms=now + LEASE_MS)
            ).rowcount
            if not claimed:
                return None
            row = conn.execute(select(destinations).where(destinations.c.id == dest_id)).mappings()
            return _row(row.one())

    async def deliver_round(self, destination: Destination, sink: Sink) -> bool:
        """One round (see the module docstring). True when there was anything to do."""
        fresh, due, blocked = await asyncio.to_thread(self._load, destination)
        if not fresh and not due:
            return False
        wanted = set(destination.events)
        call_filter = destination.call_filter
        # Chains: per call, the versions to send now, oldest first.
        chains: dict[str, list[Pending]] = defaultdict(list)
        waiting: list[Pending] = []  # fresh events that must wait behind an older version
        for pending in due:
            chains[pending.event.call_id].append(pending)
        for event in fresh:
            if event.type not in wanted or not event.body:
                continue
            values = event.values
            if call_filter.text and values is not None and not call_filter.matches(values):
                continue
            if event.call_id in blocked:
                waiting.append(Pending(event, 0))
            else:
                chains[event.call_id].append(Pending(event, 0))
        outcomes: list[tuple[Pending, Result, float]] = []
        unsent: list[Pending] = []
        semaphore = asyncio.Semaphore(destination.concurrency)
        bucket = _Bucket(destination.rate_per_second)
        deadline = time.monotonic() + ROUND_SECONDS

        async def run_chain(chain: list[Pending]) -> None:
            for index, pending in enumerate(chain):
                async with semaphore:
                    if time.monotonic() > deadline:
                        unsent.extend(chain[index:])
                        return
                    await bucket.take()
                    started = time.perf_counter()
                    result = await sink.send(pending.event)
                    latency = (time.perf_counter() - started) * 1000
                outcomes.append((pending, result, latency))
                if self.on_result is not None:
                    self.on_result(destination, pending.event, result, latency)
                if not result.ok:
                    unsent.extend(chain[index + 1 :])  # the newer versions wait behind it
                    return

        await asyncio.gather(*(run_chain(c) for c in chains.values()))
        cursor = fresh[-1].seq if fresh else destination.cursor_seq
        await asyncio.to_thread(
            self._record, destination, cursor, outcomes, [*waiting, *unsent], due
        )
        return True

    def _load(self, destination: Destination) -> tuple[list[Event], list[Pending], set[str]]:
        """The next window of fresh events, the due pending ones, and the calls held back."""
        now = now_ms()
        body = raw_pushes.c.body
        join = events.outerjoin(
            raw_pushes,
            and_(
                raw_pushes.c.call_id == events.c.call_id,
                raw_pushes.c.content_hash == events.c.content_hash,
            ),
        )
        columns = [
            events.c.seq,
            events.c.id,
            events.c.type,
            events.c.call_id,
            events.c.content_hash,
            events.c.created_at_ms,
            body,
        ]
        with self.store.read_engine.connect() as conn:
            horizon = _oldest_running(conn) if self._postgres else None
            fresh_rows = conn.execute(
                select(*columns)
                .select_from(join)
                .where(events.c.seq > destination.cursor_seq)
                .order_by(events.c.seq)
                .limit(WINDOW)
            ).all()
            fresh = [_event(r) for r in fresh_rows]
            if horizon is not None:
                fresh = self._before_open_gap(conn, destination, fresh, horizon)
            # Table.alias() is what orm.aliased() returns for a table, without loading the ORM
            # (6 MB of every server process, used nowhere else).
            older = forward_pending.alias()
            pending = forward_pending
            due_rows = conn.execute(
                select(*columns, pending.c.attempts)
                .select_from(join.join(pending, pending.c.event_seq == events.c.seq))
                .where(
                    pending.c.destination_id == destination.id,
                    pending.c.state == "retry",
                    pending.c.next_attempt_ms <= now,
                    ~exists().where(
                        older.c.destination_id == pending.c.destination_id,
                        older.c.call_id == pending.c.call_id,
                        older.c.state == "retry",
                        older.c.event_seq < pending.c.event_seq,
                    ),
                )
                .order_by(pending.c.event_seq)
                .limit(WINDOW)
            ).all()
            due = [Pending(_event(r), int(r.attempts)) for r in due_rows]
            call_ids = sorted({e.call_id for e in fresh})
            blocked: set[str] = set()
            for start in range(0, len(call_ids), 500):
                chunk = call_ids[start : start + 500]
                blocked |= {
                    r[0]
                    for r in conn.execute(
                        select(pending.c.call_id).where(
                            pending.c.destination_id == destination.id,
                            pending.c.state == "retry",
                            pending.c.call_id.in_(chunk),
                        )
                    )
                }
        # A due event's call may have no other pending row: it is in a chain, not blocked.
        return fresh, due, blocked

    def _before_open_gap(
        self, conn: Connection, destination: Destination, fresh: list[Event], horizon: int
    ) -> list[Event]:
        """The fresh events up to the first gap in ``seq`` that may still fill (PostgreSQL).

        PostgreSQL hands out ``seq`` when a writer inserts its events, but writers commit in
        their own order: a batch for another hour (a reconcile, a second receiver) can commit
        seq 11 while the batch holding seq 10 is still open. Moving the cursor past 11 then
        would skip 10 for good. So a window stops before a missing seq until every
        transaction that was running when the gap was first seen has ended (``horizon``:
        the oldest transaction running before this window was read); a seq still missing
        then belongs to a batch that rolled back, and is passed over.
        """
        gaps = self._gaps[destination.id]
        for known in [g for g in gaps if g <= destination.cursor_seq]:
            del gaps[known]
        expected = destination.cursor_seq + 1
        for index, event in enumerate(fresh):
            if event.seq != expected:
                seen = gaps.get(expected)
                if seen is None:
                    gaps[expected] = _next_transaction(conn)
                    return fresh[:index]
                if horizon < seen:  # a transaction that may hold the missing seq is open
                    return fresh[:index]
            expected = event.seq + 1
        return fresh

    def _record(
        self,
        destination: Destination,
        cursor: int,
        outcomes: list[tuple[Pending, Result, float]],
        waiting: list[Pending],
        due: list[Pending],
    ) -> None:
        """Write what the round did, in one transaction (see the module docstring, step 4)."""
        now = now_ms()
        was_pending = {p.event.seq for p in due}
        attempts: list[dict[str, Any]] = []
        new_pending: list[dict[str, Any]] = []
        delivered_pending: list[int] = []
        retried: list[dict[str, Any]] = []
        tally = self.tallies[destination.name]
        last_ok = last_error = None
        gone = False
        for pending, result, latency in outcomes:
            event = pending.event
            attempts.append(
                {
                    "destination_id": destination.id,
                    "event_seq": event.seq,
                    "event_id": event.id,
                    "at_ms": now,
                    "ok": result.ok,
                    "status": result.status,
                    "latency_ms": latency,
                    "error": result.error,
                    "response": result.response,
                }
            )
            tally.latencies.append(latency)
            if result.ok:
                tally.delivered += 1
                last_ok = now
                if event.seq in was_pending:
                    delivered_pending.append(event.seq)
                continue
            tally.failed += 1
            gone = gone or result.gone
            last_error = mask_text(result.error, destination)
            failures = pending.attempts + 1
            wait = schedule.next_wait(self.schedule, failures, result.retry_after)
            state = "dead" if wait is None else "retry"
            if state == "dead":
                tally.dead += 1
            values = {
                "destination_id": destination.id,
                "event_seq": event.seq,
                "call_id": event.call_id,
                "state": state,
                "attempts": failures,
                "next_attempt_ms": now + int((wait or 0) * 1000),
                "last_status": result.status,
                "last_error": last_error,
                "last_response": mask_text(result.response, destination),
                "updated_at_ms": now,
            }
            (retried if event.seq in was_pending else new_pending).append(values)
        for pending in waiting:
            if pending.event.seq in was_pending:
                continue  # still pending as it was
            new_pending.append(waiting_row(destination.id, pending.event, now))
        changes: dict[str, Any] = {"cursor_seq": cursor, "lease_until_ms": now + LEASE_MS}
        if last_ok is not None:
            changes |= {"last_success_at_ms": last_ok, "failing_since_ms": None}
        if last_error is not None:
            changes |= {"last_error": last_error, "last_error_at_ms": now}
            if last_ok is None:
                changes["failing_since_ms"] = destination.failing_since_ms or now
        failing_since = changes.get("failing_since_ms", destination.failing_since_ms)
        if gone:
            changes |= {"state": "paused", "paused_reason": "the destination answered 410 Gone"}
        elif last_ok is None and failing_since and now - failing_since >= self.auto_pause_ms:
            hours = self.auto_pause_ms / 3_600_000
            changes |= {
                "state": "paused",
                "paused_reason": f"every attempt failed for {hours:g} hours: {last_error}",
            }
        with self.store.writing() as conn:
            moved = conn.execute(
                update(destinations)
                .where(
                    destinations.c.id == destination.id, destinations.c.lease_owner == self.owner
                )
                .values(changes)
            ).rowcount
            if not moved:
                raise _LostLease(destination.name)
            if attempts:
                conn.execute(insert(forward_attempts), attempts)
            if new_pending:
                conn.execute(insert(forward_pending), new_pending)
            for values in retried:
                conn.execute(
                    update(forward_pending)
                    .where(
                        forward_pending.c.destination_id == destination.id,
                        forward_pending.c.event_seq == values["event_seq"],
                    )
                    .values(values)
                )
            _delete_pending(conn, destination.id, delivered_pending)
        if "state" in changes:
            log.warning("forwarding to %s paused: %s", destination.name, changes["paused_reason"])


def make_sink(destination: Destination, renderer: Renderer, guard: AddressGuard) -> Sink:
    """The sink for a destination's kind."""
    if destination.kind in ("webhook", "relay"):
        return HttpSink(destination, renderer, guard)
    return brokers.make(destination, renderer, guard)


def _place() -> str:
    """Where a pid names one process: this boot of this machine, this pid namespace.

    Empty where that cannot be told (not Linux): leases are then only taken when they end.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid")
    except OSError:
        return ""
    seen = f"{boot}:{namespace.st_dev}:{namespace.st_ino}"
    return hashlib.sha256(seen.encode()).hexdigest()[:8]


_HOST = socket.gethostname()
_PLACE = _place()


def _dead_here(owner: str) -> bool:
    """True when ``owner`` was a deliverer in a process of this place that no longer exists.

    Such a lease is left by a process killed without releasing it (kill -9, a crash). A live
    pid, even a reused one, keeps it until it ends; so does any owner from another host, boot
    or pid namespace, since its pid means nothing here.
    """
    host, _, rest = owner.partition(":")
    pid, _, rest = rest.partition(":")
    _, _, place = rest.partition(":")
    if not _PLACE or place != _PLACE or host != _HOST or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    return False


class _LostLease(Exception):
    """Another process took the destination over (this one stalled past its lease)."""


def waiting_row(destination_id: int, event: Event, now: int) -> dict[str, Any]:
    """A ``forward_pending`` row for an event that waits its turn (no attempt yet)."""
    return {
        "destination_id": destination_id,
        "event_seq": event.seq,
        "call_id": event.call_id,
        "state": "retry",
        "attempts": 0,
        "next_attempt_ms": now,
        "last_status": None,
        "last_error": None,
        "last_response": None,
        "updated_at_ms": now,
    }


def _config(destination: Destination) -> tuple[Any, ...]:
    """What a sink is built from: a change of any of these rebuilds it."""
    return (
        destination.url,
        destination.kind,
        destination.secret,
        destination.previous_secret,
        destination.previous_secret_until_ms,
        destination.token,
        destination.timeout_seconds,
        destination.concurrency,
    )


def _oldest_running(conn: Connection) -> int:
    """PostgreSQL: the oldest transaction id still running (every older one has ended)."""
    return int(conn.exec_driver_sql(_XMIN).scalar_one())


def _next_transaction(conn: Connection) -> int:
    """PostgreSQL: the next transaction id (every running transaction's is below it)."""
    return int(conn.exec_driver_sql(_XMAX).scalar_one())


_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_XMAX = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"


def _event(row: Any) -> Event:
    return Event(
        seq=int(row.seq),
        id=row.id,
        type=row.type,
        call_id=row.call_id,
        content_hash=row.content_hash,
        created_at_ms=int(row.created_at_ms),
        body=bytes(row.body) if row.body is not None else b"",
    )


def _delete_pending(conn: Connection, destination_id: int, seqs: Iterable[int]) -> None:
    seqs = list(seqs)
    for start in range(0, len(seqs), 500):
        conn.execute(
            delete(forward_pending).where(
                forward_pending.c.destination_id == destination_id,
                forward_pending.c.event_seq.in_(seqs[start : start + 500]),
            )
        )


def oldest_undelivered_ms(store: Store, destination: Destination) -> int | None:
    """When the oldest event this destination still owes was created (None: nothing owed).

    Counts events past its cursor and pending retries; dead letters are reported apart.
    """
    with store.read_engine.connect() as conn:
        fresh = conn.execute(
            select(func.min(events.c.created_at_ms)).where(events.c.seq > destination.cursor_seq)
        ).scalar_one()
        retry = conn.execute(
            select(func.min(events.c.created_at_ms))
            .select_from(events.join(forward_pending, forward_pending.c.event_seq == events.c.seq))
            .where(
                forward_pending.c.destination_id == destination.id,
                forward_pending.c.state == "retry",
            )
        ).scalar_one()
    found = [v for v in (fresh, retry) if v is not None]
    return int(min(found)) if found else None
