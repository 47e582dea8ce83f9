"""What a store takes and what it answers: a push to store, a body refused, the outcome.

Its own module so that the batch apply (``batch``) and the store (``__init__``) share these
types without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cdrhub.cdr import CallRecord, parse

Outcome = Literal["created", "duplicate", "updated", "stale", "spooled", "accepted"]
"""What storing a push did.

``created``: a new call. ``duplicate``: same content as the stored call (a retry), only the
delivery count moved. ``updated``: new content for a known call (a correction); it becomes the
current row and its body a new raw version. ``stale``: content this call had before but that
was since superseded (a late retry of an old version); counted, never allowed to win.
``spooled``: the database was unavailable; the push is synced to the local spool and will be
stored as soon as the database is back (see ``cdrhub.spool``). ``accepted``: synced to the
push journal (``CDRHUB_JOURNAL``); the applier stores it moments later, when it becomes one of
the others (see ``cdrhub.ingest.journal``).
"""

Source = Literal["push", "import", "replay"]


@dataclass(frozen=True, slots=True, eq=False)
class Push:
    """A valid call log to store, with the exact bytes it arrived as.

    The record may be given as None by a caller that has only checked the body
    (:func:`cdrhub.cdr.check`): it is then built from ``body`` the first time it is read. The
    push endpoint does this, so with the journal's applier process the server never builds a
    record at all (the applier reads the body again), and on the direct path the writer
    thread builds it, not the event loop.
    """

    _record: CallRecord | None
    body: bytes
    source: Source = "push"
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def record(self) -> CallRecord:
        """The typed record; built from ``body`` on first use when none was given."""
        record = self._record
        if record is None:
            record = parse(self.body)
            object.__setattr__(self, "_record", record)  # frozen: a cache, not a change
        return record

    def __eq__(self, other: object) -> bool:
        """Equal pushes carry the same record (built if need be), bytes, source and time."""
        if not isinstance(other, Push):
            return NotImplemented
        return (self.record, self.body, self.source, self.received_at) == (
            other.record,
            other.body,
            other.source,
            other.received_at,
        )

    __hash__ = None  # type: ignore[assignment]  # a record's values are a dict: unhashable


@dataclass(frozen=True, slots=True)
class Rejected:
    """An authenticated body we refused, kept so an operator can inspect and replay it."""

    body: bytes
    status: int
    reason: str
    detail: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_complete: bool = True
    path: str | None = None
    remote_addr: str | None = None
    call_id: str | None = None
    source: Source = "push"
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        # The quarantine is where a refused body goes because of what it holds, so nothing it
        # holds may make the quarantine refuse it too (PostgreSQL takes no NUL in text, no
        # database a lone surrogate): the bytes are kept exactly in ``body``, and these labels
        # keep what the database cannot hold as a visible escape.
        for name in ("call_id", "path", "remote_addr"):
            object.__setattr__(self, name, storable_text(getattr(self, name)))


Item = Push | Rejected


def storable_text(text: str | None) -> str | None:
    """``text`` as every database stores it: NUL and lone surrogates become ``\\x00``, ``\\ud800``.

    For labels of a refused body (its callId, the path it came on), never for call data: a
    call whose text holds these is refused by the parser, and its exact bytes are its body.
    """
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    return text.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
