"""The push journal: a 200 after one synced append; the tables are written off the request path.

With ``CDRHUB_JOURNAL=true`` the writer thread appends every valid push to this process's
journal file (length-prefixed records with a CRC, the raw body inside: :func:`frame`), syncs
it once for the whole group of pushes waiting at that moment, and only then answers them
``accepted``. The **applier** reads the synced records in file order and stores them in
large batches through :meth:`Store.write`, which records in the same transaction how far the
file is applied (``journal_applied``). It is a thread here, or, by default in a server, a
process of its own fed by :mod:`cdrhub.ingest.applier` (this class runs there too). So:

- a 200 means the body is on disk (the append was synced before the answer);
- kill -9 at any moment loses nothing acknowledged: on the next start the file, whose owner
  is dead (its ``flock`` is gone), is applied from its recorded offset to its end, exactly the
  records not committed yet, none twice (the offset moved with the rows);
- a torn last record (the crash hit mid-append, before the sync, so before any 200) is shorter
  than its length says and is skipped;
- a call's versions are applied in the order they were acknowledged (one file, read in order);
- while the database is away, records wait in the journal and the applier retries each second.

Files are rotated at ``segment_bytes``; a rotated file is removed once applied in full.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cdrhub import cdr
from cdrhub.errors import BadJson, InvalidRecord, StoreFailed, StoreUnavailable
from cdrhub.ingest.spool import decode_record, encode_record
from cdrhub.store import Item, Push, Rejected, Source, Store

try:
    import fcntl
except ImportError:  # Windows: one process per journal directory
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cdrhub.journal")

_READ_CHUNK = 4 * 2**20  # bytes read per pass; the applier never holds more than this
_ADOPT_EVERY = 5.0  # seconds between looks for the files of processes that ended
_KEEP_IN_MEMORY = 50_000  # pending pushes whose parsed items are kept for the applier


class JournalLink(Protocol):
    """An applier outside this object (a process: :class:`cdrhub.ingest.applier.ApplierLink`),
    which the writer tells of each new file, each sync and each rotation."""

    def segment(self, segment: _Segment) -> None: ...
    def synced(self, segment: _Segment) -> None: ...
    def seal(self, segment: _Segment) -> None: ...
    def start(self) -> None: ...
    def stop(self, timeout: float) -> None: ...


@dataclass
class _Segment:
    path: Path
    fd: int
    end: int = 0  # bytes synced (own files) or the file's size (a dead process's)
    applied: int = 0
    sealed: bool = False  # no more appends: remove once applied in full
    own: bool = True

    @property
    def name(self) -> str:
        return self.path.name


class Journal:
    """This process's journal (written by the writer thread) and its applier thread."""

    def __init__(
        self,
        directory: Path,
        store: Store,
        *,
        # Records per transaction. The applier holds a batch's bodies, records and parameters
        # at once: 5,000 took its process to 98.5 MB while catching up, 1,000 to 72.8 MB,
        # applying as many rows in the same time (BENCHMARKS.md, memory after a million pushes).
        batch_max: int = 1000,
        segment_bytes: int = 64 * 2**20,
        link: Callable[[Journal], JournalLink] | None = None,
        writer: bool = True,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._store = store
        self._batch_max = batch_max
        self._segment_bytes = segment_bytes
        self._lock = threading.Condition()
        self._segments: list[_Segment] = []
        # What this process appended and has not applied: (file, start, end, when, count,
        # items). The items are kept so the applier need not read and parse them back; past
        # _KEEP_IN_MEMORY pending pushes (a long outage) only the file keeps them.
        self._appended: deque[tuple[str, int, int, float, int, list[Item] | None]] = deque()
        self._pending_records = 0
        self._applied_records = 0
        self._stopping = False
        self._retry_at = 0.0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="cdrhub-applier", daemon=True)
        # The files of processes that ended are looked for at the start and every few seconds
        # after (a worker, or the applier of a server killed a moment ago, may hold them then).
        self._adopted = False
        self._next_adoption = 0.0
        # An applier elsewhere (cdrhub.ingest.applier), told of every segment and sync.
        self._link = link(self) if link is not None else None
        self._current = self._open_segment() if writer else None

    # -- writing (the writer thread, before the 200s) -------------------------------------------

    def _open_segment(self) -> _Segment:
        # Names sort in creation order, so the files of dead processes are applied oldest first.
        name = f"journal-{time.time_ns() // 1000:017d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        path = self.directory / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        segment = _Segment(path, fd)
        with self._lock:
            self._segments.append(segment)
        if self._link is not None:
            self._link.segment(segment)
        return segment

    def append(self, items: list[Item]) -> None:
        """Write ``items`` and sync them (one fdatasync); raises OSError if the disk will not."""
        segment = self._current
        assert segment is not None, "an applier-only journal does not append"
        if segment.end >= self._segment_bytes:
            with self._lock:
                segment.sealed = True
            if self._link is not None:
                self._link.seal(segment)
            segment = self._current = self._open_segment()
        data = b"".join(map(frame, items))
        try:
            written = 0
            while written < len(data):
                written += os.write(segment.fd, data[written:])
            os.fdatasync(segment.fd)
        except OSError:
            # Leave no partial record for the next append to run into (it would fail the CRC
            # of the next, acknowledged record too): cut the file back to what was synced.
            os.ftruncate(segment.fd, segment.end)
            raise
        with self._lock:
            start = segment.end
            segment.end += len(data)
            # The applier thread applies from these; an applier process reads the file.
            keep = (
                self._link is None
                and self._pending_records - self._applied_records < _KEEP_IN_MEMORY
            )
            self._pending_records += len(items)
            self._appended.append(
                (
                    segment.name,
                    start,
                    segment.end,
                    time.monotonic(),
                    len(items),
                    items if keep else None,
                )
            )
            self._lock.notify()
        if self._link is not None:
            self._link.synced(segment)

    # -- the applier --------------------------------------------------------------------------

    def start(self) -> None:
        """Apply in the background, starting with the files of processes that ended."""
        if self._link is not None:
            self._link.start()
        else:
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Apply what is synced (if the database takes it), then end the applier."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        if self._link is not None:
            self._link.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
        for segment in list(self._segments):
            if segment.applied == segment.end:
                try:
                    self._remove(segment)
                    continue
                except StoreUnavailable:
                    pass  # its offset row stays; the file is empty of news and is removed later
            os.close(segment.fd)
            segment.fd = -1
        self._segments.clear()

    def _adopt_orphans(self) -> None:
        self._adopted = True
        self._next_adoption = time.monotonic() + _ADOPT_EVERY
        for path in sorted(self.directory.glob("journal-*.log")):
            if any(s.path == path for s in self._segments):
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue  # applied in full and removed meanwhile
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # a live process owns it and applies it itself
                    continue
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)  # its owner removed it after applying it, just before our lock
                continue
            # Read after the lock: an owner commits its last offset before it lets go.
            size = os.fstat(fd).st_size
            applied = min(self._store.journal_offsets().get(path.name, 0), size)
            segment = _Segment(path, fd, end=size, applied=applied, sealed=True, own=False)
            if size > applied:
                log.info("applying %d journal byte(s) left in %s", size - applied, path.name)
            with self._lock:
                self._segments.insert(len([s for s in self._segments if not s.own]), segment)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._work():
                    self._lock.wait(1.0)
                stopping = self._stopping
            if time.monotonic() < self._retry_at and not stopping:
                time.sleep(max(0.0, min(1.0, self._retry_at - time.monotonic())))
                continue
            try:
                self._apply_pass()
                self._last_error = None
            except StoreUnavailable as exc:
                self._last_error = exc.detail
                self._failed(exc.detail)
                self._retry_at = time.monotonic() + 1.0
                log.warning("journal not applied yet: %s", exc.detail)
                if stopping:
                    return  # left on disk: the next start applies it
            except Exception:
                # A bug of ours must not end the applier: the journal keeps every record.
                self._retry_at = time.monotonic() + 1.0
                log.exception("applying the journal failed")
                if stopping:
                    return
            if stopping:
                with self._lock:
                    if not self._work():
                        return

    def _failed(self, detail: str) -> None:
        """The database refused a pass (the applier process tells its server)."""

    def _work(self) -> bool:
        if self._adopted and time.monotonic() >= self._next_adoption and not self._stopping:
            self._adopted = False  # time to look for files whose process has ended
        return not self._adopted or any(
            s.applied < s.end or (s.sealed and s.applied == s.end) for s in self._segments
        )

    def _apply_pass(self) -> None:
        if not self._adopted:
            self._adopt_orphans()
        for segment in list(self._segments):
            with self._lock:
                end = segment.end
            while segment.applied < end:
                if not self._apply_fresh(segment, end):
                    self._apply_chunk(segment, end)
            if segment.sealed and segment.applied == segment.end:
                self._remove(segment)

    def _apply_fresh(self, segment: _Segment, end: int) -> bool:
        """Apply records this process appended from the items it still holds, if it does."""
        batch: list[Item] = []
        offset = segment.applied
        with self._lock:
            for name, start, stop, _, _, items in self._appended:
                if name != segment.name or stop <= offset:
                    continue
                if start != offset or items is None or stop > end:
                    break
                batch.extend(items)
                offset = stop
                if len(batch) >= self._batch_max:
                    break
        if not batch:
            return False
        self._store_batch(segment, batch, offset)
        return True

    def _apply_chunk(self, segment: _Segment, end: int) -> None:
        start = segment.applied
        data = os.pread(segment.fd, min(end - start, _READ_CHUNK), start)
        items: list[Item] = []
        position = 0
        while position + _HEAD.size <= len(data):
            magic, length, crc = _HEAD.unpack_from(data, position)
            following = position + _HEAD.size + length
            if following > len(data):
                break
            payload = data[position + _HEAD.size : following]
            item = unframe(payload) if magic == _MAGIC and zlib.crc32(payload) == crc else None
            if item is None:
                log.error(
                    "skipping a corrupt journal record at byte %d of %s",
                    start + position,
                    segment.name,
                )
            else:
                items.append(item)
            position = following
            if len(items) >= self._batch_max:
                self._store_batch(segment, items, start + position)
                items = []
        if position == 0 and not items:
            if start + len(data) >= end and not segment.own:
                # A dead process's torn last record: it was never synced, so never answered.
                log.warning(
                    "skipping a torn last record of %d bytes in %s", len(data), segment.name
                )
                self._store.write([], progress=(segment.name, end))
                segment.applied = end
                return
            if len(data) >= _READ_CHUNK:
                raise ValueError(f"a record over {_READ_CHUNK} bytes in {segment.name}")
            return
        self._store_batch(segment, items, start + position)

    def _store_batch(self, segment: _Segment, items: list[Item], offset: int) -> None:
        """Store ``items`` with the offset after them; a refused one is quarantined, not retried."""
        try:
            self._store.write(items, progress=(segment.name, offset))
        except StoreUnavailable:
            raise
        except Exception:
            if len(items) <= 1:
                self._store.write(self._instead(items), progress=(segment.name, offset))
            else:
                # Find the one the database refuses, storing the others in order. Only the
                # last keeps the batch's offset; the others keep it where it was, so a crash
                # in between repeats them (idempotent: one more delivery, never a new row).
                for item in items[:-1]:
                    self._store_batch(segment, [item], segment.applied)
                self._store_batch(segment, items[-1:], offset)
        self._done(segment, offset)

    def _instead(self, items: list[Item]) -> list[Item]:
        """What to store instead of a record the database refused (called while handling it)."""
        if not items or isinstance(items[0], Rejected):
            log.exception("the quarantine refused a journal record; it stays in the journal file")
            return []
        item = items[0]
        assert isinstance(item, Push)
        log.exception("the database refused journal call %s; quarantining it", item.record.call_id)
        error = StoreFailed("the call could not be stored; see the server log")
        return [
            Rejected(
                body=item.body,
                status=error.status,
                reason=error.code,
                detail=error.body(),
                call_id=item.record.call_id,
                source=item.source,
                received_at=item.received_at,
            )
        ]

    def _done(self, segment: _Segment, offset: int) -> None:
        with self._lock:
            segment.applied = max(segment.applied, offset)
            while (
                self._appended
                and self._appended[0][0] == segment.name
                and self._appended[0][2] <= segment.applied
            ):
                self._applied_records += self._appended.popleft()[4]

    def _release(self, segment: _Segment) -> None:
        """Stop tracking ``segment`` and close it (its lock goes with its last descriptor)."""
        with self._lock:
            if segment in self._segments:
                self._segments.remove(segment)
                if segment.fd >= 0:
                    os.close(segment.fd)
                    segment.fd = -1

    def _remove(self, segment: _Segment) -> None:
        self._release(segment)
        segment.path.unlink(missing_ok=True)
        self._store.forget_journal(segment.name)

    # -- what an operator sees ------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """How far behind the applier is, for /readyz and the metrics."""
        with self._lock:
            pending_bytes = sum(s.end - s.applied for s in self._segments)
            oldest = self._appended[0][3] if self._appended else None
            pending = self._pending_records - self._applied_records
        return {
            "pending_bytes": pending_bytes,
            "pending_records": pending,
            "seconds_behind": 0.0 if oldest is None else round(time.monotonic() - oldest, 3),
            "files": len(self._segments),
            "last_error": self._last_error,
            "applier": "thread" if self._link is None else "process",
        }


_MAGIC = 0xCD
_HEAD = struct.Struct("<BII")  # magic, payload length, crc32 of the payload
_SOURCES: tuple[Source, ...] = ("push", "import", "replay")
_PUSH = struct.Struct("<cqB")  # b"P", received (epoch ms), source


def frame(item: Item) -> bytes:
    """One journal record: a header, then the body exactly as it arrived (no re-encoding).

    A push is its raw body behind 10 bytes (kind, received ms, source); a refused body, rare,
    is kept in the spool's JSON record. The CRC covers the payload, the length frames it, so
    a record cut short by a crash is recognised at the end of the file and skipped.
    """
    if isinstance(item, Push):
        received_ms = int(item.received_at.timestamp() * 1000)
        payload = _PUSH.pack(b"P", received_ms, _SOURCES.index(item.source)) + item.body
    else:
        payload = b"R" + encode_record(item)
    return _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def unframe(payload: bytes) -> Item | None:
    """The item a record's payload holds (parsed again: the applier needs the fields)."""
    if payload[:1] == b"R":
        return decode_record(payload[1:])
    _, received_ms, source = _PUSH.unpack_from(payload)
    body = payload[_PUSH.size :]
    received = datetime.fromtimestamp(received_ms / 1000, UTC)
    try:
        return Push(cdr.parse(body), body, source=_SOURCES[source], received_at=received)
    except (BadJson, InvalidRecord) as error:
        # Valid when it arrived, refused by today's rules: keep it where an operator looks.
        return Rejected(
            body=body,
            status=error.status,
            reason=error.code,
            detail=error.body(),
            source=_SOURCES[source],
            received_at=received,
        )


__all__ = ["Journal", "JournalLink", "frame", "unframe"]
