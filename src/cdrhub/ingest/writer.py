"""Group commit: one writer thread stores every push that is waiting in a single transaction.

When the database cannot take a batch, the writer puts it in the local spool (synced) and the
requests still get their 200; while anything is spooled, new batches go behind it, so a
correction never lands before the version it corrects. The spool is drained, oldest first, as
soon as the database answers again (tried at most once a second while it does not).

Requests put their item on a queue and await a future. The thread takes everything queued
(up to ``batch_max``), commits it (one fsync for all of them) and only then resolves the
futures, so each request answers 200 only once its own row is durable. While one commit is
syncing, the next batch gathers: the busier the server, the bigger the batches.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any

from cdrhub.errors import StoreUnavailable
from cdrhub.ingest.journal import Journal
from cdrhub.ingest.spool import Spool
from cdrhub.ops import Metrics
from cdrhub.store import Item, Outcome, Push, Store

log = logging.getLogger("cdrhub.writer")  # the name operators filter logs by; kept across moves

_STOP = object()

Result = Outcome | int
_Settled = list[tuple[asyncio.Future[Result], Result | BaseException]]


class BatchWriter:
    """The only writer of its process; see the module docstring for the contract."""

    def __init__(
        self,
        store: Store,
        *,
        batch_max: int = 512,
        spool: Spool | None = None,
        metrics: Metrics | None = None,
        journal: Journal | None = None,
    ) -> None:
        self._store = store
        self._journal = journal
        self._metrics = metrics or Metrics()
        self._spool = spool
        self._retry_at = 0.0  # monotonic time before which the database is not tried again
        self._batch_max = batch_max
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        #: Items queued by the event loop since its last pass, handed over together at the end
        #: of it (see enqueue).
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._thread = threading.Thread(target=self._run, name="cdrhub-writer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the thread; must be called from the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._thread.start()

    async def submit(self, item: Item) -> Result:
        """Store ``item``; returns once it is committed, or raises what the store raised."""
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item``; the future is resolved (in the event loop) once it is committed.

        For callers that answer from a callback rather than a task (the protocol's fast path
        for pushes, :mod:`cdrhub.ingest.protocol`); from the event loop's thread only.

        The items queued during one pass of the event loop (every push whose bytes arrived
        in it) reach the thread together, when the pass ends: one hand-over and one wake-up
        instead of one for each, and the thread's first look finds the whole group, so one
        sync serves it (handed over one by one, groups were smaller and the thread spent
        twice the CPU a push, BENCHMARKS.md "Fifth look").
        """
        assert self._loop is not None, "BatchWriter.start() was not called"
        future: asyncio.Future[Result] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self._hand_over)
        self._pending.append((item, future))
        return future

    def _hand_over(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self._queue.put(pending)

    async def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        if not self._thread.is_alive():
            return
        self._hand_over()
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        stopping = False
        #: Items taken from the queue but not yet committed: a group handed over in one pass
        #: can hold more than batch_max, and batch_max is the most one commit stores.
        taken: list[tuple[Item, asyncio.Future[Result]]] = []
        while taken or not stopping:
            if not taken:
                try:
                    first = self._queue.get(timeout=1.0 if self._spooling() else None)
                except queue.Empty:
                    self._drain()
                    continue
                if first is _STOP:
                    break
                taken = list(first)
            while len(taken) < self._batch_max and not stopping:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is _STOP:
                    stopping = True
                    break
                taken += following
            batch, taken = taken[: self._batch_max], taken[self._batch_max :]
            settled = self._commit(batch)
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:
                log.error("event loop closed before %d stored items were answered", len(batch))
                return

    def _spooling(self) -> bool:
        return self._spool is not None and self._spool.pending > 0

    def _drain(self) -> None:
        """Move spooled items into the database, unless it failed less than a second ago."""
        assert self._spool is not None
        if time.monotonic() < self._retry_at:
            return
        try:
            self._spool.drain(self._store)
        except StoreUnavailable as exc:
            self._retry_at = time.monotonic() + 1.0
            log.debug("spool not drained yet: %s", exc.detail)
        except OSError:
            self._retry_at = time.monotonic() + 1.0
            log.exception("could not read the spool")
        except Exception:
            # A bug of ours must not end the only writer thread: every push after it would
            # wait for an answer forever. The spool stays as it is; it is tried again later.
            self._retry_at = time.monotonic() + 1.0
            log.exception("draining the spool failed")

    def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> _Settled:
        if self._journal is not None:
            return self._to_journal(batch)
        items = [item for item, _ in batch]
        if self._spooling():
            self._drain()
            if self._spooling():  # still down: keep the order, go behind what is spooled
                return self._to_spool(batch, None)
        started = time.perf_counter()
        try:
            results: list[Result | BaseException] = list(self._store.write(items))
            elapsed = time.perf_counter() - started
            self._metrics.batch_size.observe(len(items))
            self._metrics.commit_seconds.observe(elapsed)
            log.debug("committed %d item(s) in %.1f ms", len(items), elapsed * 1e3)
        except StoreUnavailable as exc:
            log.error("could not store %d item(s): %s", len(items), exc.detail)
            self._metrics.database_errors.inc()
            self._retry_at = time.monotonic() + 1.0
            return self._to_spool(batch, exc)
        except Exception as exc:
            # Not the database being away: something about one item. Store the others
            # one by one so a single bad push cannot fail the pushes that shared its batch.
            if len(items) == 1:
                log.exception("storing an item failed")
                results = [exc]
            else:
                results = [self._commit([pair])[0][1] for pair in batch]
        return [(future, result) for (_, future), result in zip(batch, results, strict=True)]

    def _to_journal(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> _Settled:
        """Journal mode: pushes are answered ``accepted`` once synced to the journal.

        A refused body still goes straight to the quarantine, since its answer names the
        entry; while the database cannot take it, it is journaled too (answered 0, as spooled).
        """
        assert self._journal is not None
        results: dict[int, Result | BaseException] = {}
        journaled: list[tuple[int, Item]] = []
        for index, (item, _) in enumerate(batch):
            if isinstance(item, Push):
                journaled.append((index, item))
                continue
            try:
                results[index] = self._store.write([item])[0]
            except StoreUnavailable:
                journaled.append((index, item))
            except Exception as exc:
                log.exception("quarantining a refused body failed")
                results[index] = exc
        if journaled:
            started = time.perf_counter()
            try:
                self._journal.append([item for _, item in journaled])
            except (OSError, ValueError) as exc:
                log.error("could not journal %d item(s): %s", len(journaled), exc)
                error = StoreUnavailable("the push journal is not writable")
                results.update((index, error) for index, _ in journaled)
            else:
                self._metrics.batch_size.observe(len(journaled))
                self._metrics.commit_seconds.observe(time.perf_counter() - started)
                results.update(
                    (index, "accepted" if isinstance(item, Push) else 0)
                    for index, item in journaled
                )
        return [(future, results[index]) for index, (_, future) in enumerate(batch)]

    def _to_spool(
        self, batch: list[tuple[Item, asyncio.Future[Result]]], cause: StoreUnavailable | None
    ) -> _Settled:
        """Spool the batch; 'spooled' (0 for refused bodies) or, if even that fails, the 503."""
        items = [item for item, _ in batch]
        if self._spool is None:
            error = cause or StoreUnavailable("database unavailable")
            return [(future, error) for _, future in batch]
        try:
            self._spool.append(items)
        except (OSError, ValueError) as exc:
            log.error("could not spool %d item(s) either: %s", len(items), exc)
            error = cause or StoreUnavailable("database unavailable and the spool is not writable")
            return [(future, error) for _, future in batch]
        self._metrics.spooled.inc(len(items))
        log.warning("database unavailable: spooled %d item(s)", len(items))
        return [(future, "spooled" if isinstance(item, Push) else 0) for item, future in batch]


def _settle(settled: _Settled) -> None:
    for future, result in settled:
        if future.done():  # the request went away; its item is stored all the same
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
