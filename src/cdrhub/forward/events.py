"""An event as it leaves cdrhub: its id, type, time, the call as the API shows it, the raw body.

Every kind of destination gets the same JSON (the ``relay`` kind aside, which sends NXCC's own
bytes)::

    {"id": "evt_01JD...", "type": "call.created", "timestamp": "2026-12-02T08:00:00.123Z",
     "data": {"call": {...as GET /api/calls/{callId}, without raw_versions...},
              "raw": "{\\"callId\\": ...}"}}

``data.raw`` is the body exactly as NXCC sent it (a string: parse it to get NXCC's fields).
The id is the same on every attempt and replay, so consumers deduplicate on it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cdrhub import cdr
from cdrhub.errors import CdrhubError
from cdrhub.reports import callfacts, query


@dataclass(frozen=True)
class Event:
    """One outbox event with the body of the call version it announces."""

    seq: int
    id: str
    type: str
    call_id: str
    content_hash: str
    created_at_ms: int
    body: bytes

    @functools.cached_property
    def record(self) -> cdr.CallRecord:
        """The call version, parsed as it was when stored."""
        return cdr.parse(self.body)

    @functools.cached_property
    def values(self) -> dict[str, Any] | None:
        """The version's column values, or None when today's parser refuses a body stored
        before a rule was added (it is still forwarded: its raw body is the truth)."""
        try:
            return self.record.values
        except CdrhubError:
            return None

    @property
    def timestamp(self) -> str:
        moment = datetime.fromtimestamp(self.created_at_ms / 1000, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Renderer:
    """Builds the JSON of an event, in the zone and with the thresholds of the settings."""

    def __init__(self, timezone: str, short_abandon_seconds: float) -> None:
        self.tz = ZoneInfo(timezone)
        self.short_abandon_seconds = short_abandon_seconds

    def call(self, event: Event) -> dict[str, Any] | None:
        """The call as ``GET /api/calls/{callId}`` shows it, for this version (None when the
        body no longer parses: see :attr:`Event.values`; ``data.raw`` still carries it)."""
        if event.values is None:
            return None
        row = {**event.values, "content_hash": event.content_hash}
        return {
            **query.to_item(row, self.tz),
            "derived": callfacts.derived_fields(row, self.short_abandon_seconds),
        }

    def payload(self, event: Event) -> bytes:
        """The event's JSON, UTF-8."""
        document = {
            "id": event.id,
            "type": event.type,
            "timestamp": event.timestamp,
            "data": {"call": self.call(event), "raw": event.body.decode("utf-8")},
        }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()
