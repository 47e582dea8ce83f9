"""The local spool: where pushes go, synced, while the database cannot take them.

A 200 must mean "durable". When the database is down, locked or unreachable, that durability
comes from this append-only file instead: one record per line, ``<crc32> <json>``, written and
fsynced before the 200. The writer thread, the only one that touches the spool, moves the
records into the database as soon as a commit works again (storing is idempotent, so a record
in both places is still one call) and empties the file only after that commit.

Each process writes its own file and holds an ``flock`` on it while alive, so with several
workers none drains a file another is still appending to, while the files of a process that
died (kill -9) are picked up by whichever process drains next.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdrhub import cdr
from cdrhub.errors import BadJson, InvalidRecord, StoreFailed, StoreUnavailable
from cdrhub.store import Item, Push, Rejected, Store

try:
    import fcntl
except ImportError:  # Windows: one process per spool directory
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("cdrhub.spool")  # the name operators filter logs by; kept across moves

_DRAIN_CHUNK = 500


class Spool:
    """This process's spool file, plus what it knows of the other files in the directory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        self._fd: int | None = None
        # Records left by processes that ended (a crash, a restart) wait to be drained too.
        self.pending = sum(_lines(path) for path in self._other_files())
        self.oldest_ms: int | None = None

    # -- writing (before a 200) ---------------------------------------------------------------

    def append(self, items: list[Item]) -> None:
        """Write ``items`` and sync them; raises OSError if the disk will not take them."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        data = b"".join(_encode(item) for item in items)
        written = 0
        while written < len(data):
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        self.pending += len(items)
        first = min(_ms(item.received_at) for item in items)
        self.oldest_ms = first if self.oldest_ms is None else min(self.oldest_ms, first)

    # -- draining (the writer thread, when the database is back) -------------------------------

    def drain(self, store: Store) -> int:
        """Store every spooled record; returns how many. Raises StoreUnavailable to retry later.

        A file is emptied (or, for another process's, removed) only after all its records are
        committed. If the database fails half-way, the records already committed will be
        stored again next time: the same call, counted as one more delivery, never a new row.
        """
        drained = 0
        for path, fd in self._drainable():
            try:
                items = list(read_records(path))
                for start in range(0, len(items), _DRAIN_CHUNK):
                    self._write(store, items[start : start + _DRAIN_CHUNK])
                drained += len(items)
                if path == self.path:
                    os.ftruncate(fd, 0)
                    os.fsync(fd)
                else:
                    path.unlink()
            finally:
                if path != self.path:
                    os.close(fd)
        if drained:
            log.info("moved %d spooled item(s) into the database", drained)
        self.pending = 0
        self.oldest_ms = None
        return drained

    def _write(self, store: Store, items: list[Item]) -> None:
        """Store ``items``; one the database refuses for what it holds is set aside, not retried.

        Only an outage (``StoreUnavailable``) stops the drain. Anything else is about one item
        and would fail the same way at every retry, holding every later call in the spool
        behind it: the others are stored one by one, a refused push goes to the quarantine
        (its body is all it needs), and what even the quarantine refuses is kept in a
        ``refused-*.log`` file beside the spool, in the spool's format, with an error logged.
        """
        try:
            store.write(items)
            return
        except StoreUnavailable:
            raise
        except Exception:
            if len(items) == 1:
                refused = self._refused(items[0])
                if refused is None:
                    return
                items = [refused]
            # else: find the one, storing the others.
        for item in items:
            self._write(store, [item])

    def _refused(self, item: Item) -> Rejected | None:
        """What to store instead of an item the database refused (called while handling it)."""
        if isinstance(item, Rejected):
            self._set_aside(item)
            return None
        log.exception("the database refused spooled call %s; quarantining it", item.record.call_id)
        error = StoreFailed("the call could not be stored; see the server log")
        return Rejected(
            body=item.body,
            status=error.status,
            reason=error.code,
            detail=error.body(),
            call_id=item.record.call_id,
            source=item.source,
            received_at=item.received_at,
        )

    def _set_aside(self, item: Rejected) -> None:
        path = self.directory / f"refused-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"
        log.exception("the quarantine refused a spooled body; it is kept in %s", path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, _encode(item))
            os.fsync(fd)
        finally:
            os.close(fd)

    def _drainable(self) -> Iterator[tuple[Path, int]]:
        if self._fd is not None and self.pending:
            yield self.path, self._fd
        for path in self._other_files():
            fd = os.open(path, os.O_RDWR)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # a live process owns it and will drain it itself
                    continue
            yield path, fd

    def _other_files(self) -> Iterator[Path]:
        for path in sorted(self.directory.glob("spool-*.log")):
            if path != self.path and path.stat().st_size > 0:
                yield path

    def status(self) -> dict[str, Any]:
        """Depth and age, for /readyz and the metrics."""
        age = None if self.oldest_ms is None else round(time.time() - self.oldest_ms / 1000, 1)
        return {"pending": self.pending, "oldest_age_seconds": age}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path.exists() and self.path.stat().st_size == 0:
            self.path.unlink()


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _encode(item: Item) -> bytes:
    record: dict[str, Any] = {
        "kind": "push" if isinstance(item, Push) else "rejected",
        "body": base64.b64encode(item.body).decode(),
        "received_ms": _ms(item.received_at),
        "source": item.source,
    }
    if isinstance(item, Rejected):
        record |= {
            "status": item.status,
            "reason": item.reason,
            "detail": item.detail,
            "headers": item.headers,
            "body_complete": item.body_complete,
            "path": item.path,
            "remote_addr": item.remote_addr,
            "call_id": item.call_id,
        }
    # ASCII JSON: whatever text a refused body's labels hold, the line can always be written.
    payload = json.dumps(record, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def read_records(path: Path) -> Iterator[Item]:
    """The items in a spool file; torn or corrupt lines are skipped with a log line."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            item = _decode(line)
            if item is None:
                last = not line.endswith(b"\n")
                log.warning(
                    "skipping %s line %d of %s (%d bytes)",
                    "a torn last" if last else "a corrupt",
                    number,
                    path.name,
                    len(line),
                )
                continue
            yield item


def _decode(line: bytes) -> Item | None:
    if not line.endswith(b"\n") or len(line) < 10 or line[8:9] != b" ":
        return None
    payload = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(payload):
            return None
        record = json.loads(payload)
        body = base64.b64decode(record["body"])
        received = datetime.fromtimestamp(record["received_ms"] / 1000, UTC)
    except (ValueError, KeyError, TypeError):
        return None
    if record["kind"] == "rejected":
        return Rejected(
            body=body,
            status=record["status"],
            reason=record["reason"],
            detail=record["detail"],
            headers=[tuple(h) for h in record["headers"]],
            body_complete=record["body_complete"],
            path=record["path"],
            remote_addr=record["remote_addr"],
            call_id=record["call_id"],
            source=record["source"],
            received_at=received,
        )
    try:
        return Push(cdr.parse(body), body, source=record["source"], received_at=received)
    except (BadJson, InvalidRecord) as error:
        # Valid when it arrived, refused by today's rules: keep it where an operator looks.
        return Rejected(
            body=body,
            status=error.status,
            reason=error.code,
            detail=error.body(),
            source=record["source"],
            received_at=received,
        )


__all__ = ["Spool", "StoreUnavailable", "decode_record", "encode_record", "read_records"]

#: The record format the spool and the journal share: ``<crc32 hex> <ascii json>\n``.
encode_record = _encode
decode_record = _decode
