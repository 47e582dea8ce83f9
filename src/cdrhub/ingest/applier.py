"""The journal's applier in a process of its own: the tables are written beside the server.

The server process (:class:`ApplierLink`) only appends and syncs journal records; storing
them, the CPU-heavy half of a push (SQL, commits, the hourly statistics), runs in a child
process (:func:`main`), so it takes the second core instead of the
server's GIL. They talk over a Unix socket pair, one small message each way per group:

- server to applier: ``segment`` (a journal file, with its descriptor attached), ``synced``
  (how far it is synced now), ``sealed`` (no more appends), ``stop``;
- applier to server: ``applied`` (how far a file is in the tables, after each commit, for
  ``/readyz`` and the metrics), ``removed`` (a sealed file applied in full and deleted),
  ``failed`` (the database refused a pass).

The applier holds the server's own descriptors, and with them the server's ``flock`` on each
file: while either lives, no other process adopts the files. If the server dies (kill -9),
the applier's socket reads end-of-file and it exits at once, mid-commit or not: the
transaction is rolled back like any crash's, and the next start applies the files from the
offsets committed with the rows. If the applier dies, the server starts another, which
resumes from those offsets; nothing is applied twice (an offset moves with its rows).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdrhub.ingest.journal import Journal, _Segment
from cdrhub.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

log = logging.getLogger("cdrhub.journal")

#: The applier's CPU priority is below the server's: answering pushes is what NXCC's retry
#: clock waits on; applying them can wait a moment. On Linux it runs as ``SCHED_IDLE`` (a core
#: is its only when nothing else wants it); elsewhere at ``nice`` 10 (about a tenth of a busy
#: core's share). On a machine with no core to spare it falls behind during a burst and
#: catches up after it, which ``/readyz`` and ``/metrics`` show (``pending_records``). On 2
#: cores shared with the load generator: nice 10 gave 1.35x the pushes/s of no change, and
#: SCHED_IDLE 1.3-1.4x nice 10 (BENCHMARKS.md, "Fifth look").
_NICENESS = 10
_MESSAGE_BYTES = 4096  # every message is a short JSON object
#: The applier's command line (``-m`` would warn: the package imports this module first). The
#: priority is lowered first, so every thread, those libraries start on import included,
#: inherits it.
_CHILD = (
    f"import os; os.nice({_NICENESS}); "
    "hasattr(os, 'SCHED_IDLE') and os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0)); "
    "import sys; from cdrhub.ingest.applier import main; main(sys.argv)"
)


def _send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and any descriptors sent with it; (None, []) at end-of-file."""
    data, fds, _, _ = socket.recv_fds(sock, _MESSAGE_BYTES, 4)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


class ApplierLink:
    """The server's side: starts the applier process, keeps it told, restarts it if it dies."""

    def __init__(self, journal: Journal, environment: dict[str, str]) -> None:
        self._journal = journal
        self._environment = environment
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._ready = threading.Event()

    # -- what the journal's writer calls (under no lock of the journal's) --------------------

    def segment(self, segment: _Segment) -> None:
        self._tell({"segment": segment.name, "end": segment.end, "sealed": segment.sealed}, segment)

    def synced(self, segment: _Segment) -> None:
        self._tell({"synced": segment.name, "end": segment.end})

    def seal(self, segment: _Segment) -> None:
        self._tell({"sealed": segment.name})

    def _tell(self, message: dict[str, Any], segment: _Segment | None = None) -> None:
        with self._send_lock:
            if self._sock is None:
                return  # not started, or restarting: the new process is told everything
            try:
                _send(self._sock, message, [segment.fd] if segment is not None else [])
            except OSError:
                pass  # the applier died: the reader restarts it and tells it everything

    # -- the process --------------------------------------------------------------------------

    def start(self, wait: float = 30.0) -> None:
        """Start the applier and wait (at most ``wait`` s) until it has the database open, so
        that the first pushes after the server's start are stored as promptly as the rest."""
        self._spawn()
        if not self._ready.wait(wait):
            log.warning("the journal applier has not started within %g s; going on", wait)

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        environment = {**os.environ, **self._environment}
        # The applier logs what it does to the server's own stderr, in its format.
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            env=environment,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        with self._send_lock:
            self._sock, self._process = ours, process
            with self._journal._lock:
                segments = list(self._journal._segments)
            for segment in segments:
                if segment.own and segment.fd >= 0:
                    message = {"segment": segment.name, "end": segment.end}
                    _send(ours, {**message, "sealed": segment.sealed}, [segment.fd])
        self._reader = threading.Thread(
            target=self._read, args=(ours, process), name="cdrhub-applier-link", daemon=True
        )
        self._reader.start()

    def _read(self, sock: socket.socket, process: subprocess.Popen[bytes]) -> None:
        journal = self._journal
        while True:
            try:
                message, fds = _receive(sock)
            except OSError:
                message, fds = None, []
            for fd in fds:
                os.close(fd)
            if message is None:
                break
            name = message.get("applied") or message.get("removed")
            with journal._lock:
                segment = next((s for s in journal._segments if s.name == name), None)
            if "ready" in message:
                self._ready.set()
            elif "failed" in message:
                journal._last_error = message["failed"]
            elif segment is not None and "applied" in message:
                journal._last_error = None
                journal._done(segment, int(message["offset"]))
                for listener in journal._store.listeners:  # e.g. forwarding: new events
                    listener()
            elif segment is not None and "removed" in message:
                journal._release(segment)  # the applier deleted it and forgot its offset
        process.wait()
        with self._send_lock:
            if self._sock is sock:
                self._sock = None
        sock.close()
        if not self._stopping:
            log.error(
                "the journal applier process ended (exit %s); starting another", process.returncode
            )
            time.sleep(1.0)
            if not self._stopping:
                self._spawn()

    def stop(self, timeout: float) -> None:
        """Ask the applier to apply what is synced and end; wait for it (at most ``timeout``)."""
        self._stopping = True
        self._tell({"stop": True})
        process, reader = self._process, self._reader
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("the journal applier did not finish in %g s; stopping it", timeout)
                process.kill()
                process.wait()
        if reader is not None:
            reader.join(5.0)


class _ApplierJournal(Journal):
    """The applier process's journal: the server's files, applied by the usual applier thread."""

    def __init__(self, directory: Path, store: Store, sock: socket.socket) -> None:
        super().__init__(directory, store, writer=False)
        self._sock = sock

    def add(self, name: str, fd: int, end: int, sealed: bool) -> None:
        applied = min(self._store.journal_offsets().get(name, 0), end)
        segment = _Segment(self.directory / name, fd, end=end, applied=applied, sealed=sealed)
        with self._lock:
            self._segments.append(segment)
            self._lock.notify()

    def update(self, name: str, *, end: int | None = None, sealed: bool = False) -> None:
        with self._lock:
            for segment in self._segments:
                if segment.name == name:
                    segment.end = max(segment.end, end or 0)
                    segment.sealed = segment.sealed or sealed
            self._lock.notify()

    def _done(self, segment: _Segment, offset: int) -> None:
        super()._done(segment, offset)
        _send(self._sock, {"applied": segment.name, "offset": segment.applied})

    def _remove(self, segment: _Segment) -> None:
        super()._remove(segment)
        _send(self._sock, {"removed": segment.name})

    def _failed(self, detail: str) -> None:
        _send(self._sock, {"failed": detail})

    def serve(self) -> None:
        """Follow the server's messages until ``stop`` (apply everything, then return) or
        end-of-file (the server is gone: exit at once, see the module docstring)."""
        while True:
            select.select([self._sock], [], [])
            message, fds = _receive(self._sock)
            if message is None:
                os._exit(0)
            if "segment" in message:
                self.add(message["segment"], fds[0], int(message["end"]), bool(message["sealed"]))
            elif "synced" in message:
                self.update(message["synced"], end=int(message["end"]))
            elif "sealed" in message:
                self.update(message["sealed"], sealed=True)
            elif "stop" in message:
                self.stop(timeout=24 * 3600.0)  # the server decides how long it waits
                return


def applier_process(environment: dict[str, str]) -> Callable[[Journal], ApplierLink] | None:
    """What makes a journal's applier a process (``Journal(link=...)``), where processes can
    be handed open files (Unix); None elsewhere: the journal then applies in a thread."""
    if not hasattr(socket, "send_fds") or not hasattr(socket, "AF_UNIX"):
        return None
    return lambda journal: ApplierLink(journal, environment)


def main(argv: list[str]) -> None:
    """The applier process's entry (``python -c _CHILD FD``): started by the server only."""
    from cdrhub.ops import configure_logging
    from cdrhub.settings import Settings
    from cdrhub.store import open_store

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    sock = socket.socket(fileno=int(argv[1]))
    store = open_store(
        settings.database_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
    )
    try:
        journal = _ApplierJournal(settings.journal_directory, store, sock)
        journal.start()
        _send(sock, {"ready": True})
        journal.serve()
    finally:
        store.close()
