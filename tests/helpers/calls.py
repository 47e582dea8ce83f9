"""Building NXCC call logs for tests: times as readable UTC strings, everything else as pushed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def ms(utc: str) -> int:
    """Epoch ms of a UTC time written ``2026-11-01T05:30:00``."""
    return int(datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp() * 1000)


def call(call_id: str, start: str | None, **fields: Any) -> dict[str, Any]:
    """A push body: ``start`` as a UTC string (or None), other times as offsets in seconds.

    ``in_queue=2`` means inQueueTime is start + 2 s; ``out_queue``, ``answer`` and ``end``
    count from the start too. Other keywords are NXCC fields, passed as they are.
    """
    body: dict[str, Any] = {"callId": call_id}
    base = ms(start) if start else None
    if base is not None:
        body["startTime"] = base
    for name, key in (
        ("in_queue", "inQueueTime"),
        ("out_queue", "outQueueTime"),
        ("answer", "answerTime"),
        ("end", "endTime"),
    ):
        offset = fields.pop(name, None)
        if offset is not None:
            assert base is not None
            body[key] = base + int(offset * 1000)
    body.update(fields)
    return body


#: callIds that collide with routes, are rewritten by URL handling or need encoding: every one
#: must open its own call on the API and the dashboard. Pairs (``nl-end``/``nl-end\n``,
#: ``a``/``a/b``) catch a route that opens a neighbour instead of answering 404.
AWKWARD_IDS: tuple[str, ...] = (
    "export",
    "rows",
    "..",
    ".",
    "a",
    "a/b",
    "/lead",
    "trail/",
    "a/../b",
    "q?x=1",
    "frag#1",
    "100%",
    "pct%2F",
    "%2E%2E",
    "sp ace",
    " lead",
    "plus+1",
    "amp&id=x",
    "line\nbreak",
    "nl-end",
    "nl-end\n",
    "cr\rx",
    "tab\tx",
    "呼叫/转人工",
    "back\\slash",
    "semi;colon",
)
