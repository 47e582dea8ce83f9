"""Each call's statistical facts as NumPy columns: the one input every statistic is computed from.

Statistics over a million calls cannot afford Python work per call, so the facts a metric
needs (wait, speed of answer, talk, ring, cost, and the attributes calls are grouped and
filtered by) are derived once per call into typed arrays, with text attributes dictionary
encoded. The same columns come either straight from a SQL query (:func:`from_rows`) or from
the hourly snapshots kept in ``stat_hours`` (:func:`to_bytes` / :func:`from_bytes`), and one
aggregation runs over both, so the two ways of answering can never disagree.

Times stay integer milliseconds, exactly as NXCC sent them; money is integer micro-units, so
sums are exact whatever order calls are added in.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Column

from cdrhub.store.schema import calls

#: Marks a missing integer (NumPy integers have no null).
NULL = np.iinfo(np.int64).min

#: Text attributes, dictionary encoded: code 0 always means "not given".
TEXT = ("agent", "task_id", "intent", "hangup_reason", "call_status")
#: Small integer attributes (-1: not given).
SMALL = ("direction", "hangup_by", "answered", "queued", "has_recording")
#: Integer measures (:data:`NULL`: not given).
WIDE = ("start_ms", "wait_ms", "soa_ms", "talk_ms", "ring", "cost_micro")

_DTYPES = {
    **{name: np.dtype("<i4") for name in TEXT},
    **{name: np.dtype("i1") for name in SMALL},
    **{name: np.dtype("<i8") for name in WIDE},
}
NAMES = (*WIDE, *SMALL, *TEXT)

#: The ``calls`` columns facts are derived from, in the order :func:`from_rows` expects.
SOURCE: tuple[Column[Any], ...] = (
    calls.c.start_time_ms,
    calls.c.direction,
    calls.c.answered,
    calls.c.hangup_by,
    calls.c.record_url,
    calls.c.in_queue_time_ms,
    calls.c.out_queue_time_ms,
    calls.c.answer_time_ms,
    calls.c.end_time_ms,
    calls.c.queue_duration,
    calls.c.ring_duration,
    calls.c.total_customer_price,
    calls.c.agent_name,
    calls.c.task_id,
    calls.c.intent,
    calls.c.hangup_reason,
    calls.c.call_status,
)
_INT64_MAX = np.iinfo(np.int64).max


@dataclass
class Facts:
    """Equal-length arrays, one entry per call; ``words[name][code]`` is a text value."""

    arrays: dict[str, np.ndarray]
    words: dict[str, list[str | None]]

    def __len__(self) -> int:
        return len(self.arrays["start_ms"])


def empty() -> Facts:
    """No calls."""
    return Facts(
        {name: np.empty(0, _DTYPES[name]) for name in NAMES}, {name: [None] for name in TEXT}
    )


def _ints(values: Iterable[Any], count: int) -> np.ndarray:
    return np.fromiter((NULL if v is None else v for v in values), np.int64, count)


def _micro(price: float | None) -> int:
    if price is None or price != price:  # NaN
        return NULL
    micro = price * 1_000_000
    # Stored before cdrhub bounded prices (or written by hand): infinite or past int64, clamped.
    if not -_INT64_MAX < micro < _INT64_MAX:
        return _INT64_MAX if micro > 0 else -_INT64_MAX
    return max(-_INT64_MAX, min(_INT64_MAX, round(micro)))


def _small(value: int | None) -> int:
    """A choice (direction, hangupBy) as its code; -1 for none, and for a value too big for a
    code (a hand-written row; cdrhub accepts 0 to 2): it has no meaning to count under."""
    return value if type(value) is int and 0 <= value <= 127 else -1


def _encode(values: Sequence[str | None]) -> tuple[np.ndarray, list[str | None]]:
    index: dict[str | None, int] = {None: 0}
    codes = [index.setdefault(v, len(index)) for v in values]
    return np.array(codes, dtype=_DTYPES["agent"]), list(index)


def from_rows(rows: Sequence[Sequence[Any]]) -> Facts:
    """Facts of ``calls`` rows selected as :data:`SOURCE`, by the rules of docs/metrics.md.

    wait = (outQueueTime, else answerTime, else endTime) - inQueueTime, or queueDuration;
    speed of answer = answerTime - inQueueTime for answered queued calls; talk = endTime -
    answerTime for answered calls. All in ms; ``callfacts.call_facts`` is the same rule per call.
    """
    if not rows:
        return empty()
    n = len(rows)
    (start, direction, answered, hangup_by, record, in_q, out_q, answer, end, queue_dur,
     ring, price, *texts) = zip(*rows, strict=True)  # fmt: skip
    in_q_a, out_q_a = _ints(in_q, n), _ints(out_q, n)
    answer_a, end_a = _ints(answer, n), _ints(end, n)
    queue_a = _ints(queue_dur, n)
    is_answered = np.fromiter((a is True or a == 1 for a in answered), bool, n)
    queued = in_q_a != NULL
    left = np.where(out_q_a != NULL, out_q_a, np.where(answer_a != NULL, answer_a, end_a))
    wait = np.where(
        queued & (left != NULL),
        left - np.where(queued, in_q_a, 0),
        np.where(queued & (queue_a != NULL), queue_a * 1000, NULL),
    )
    soa = np.where(queued & is_answered & (answer_a != NULL), answer_a - in_q_a, NULL)
    talk = np.where(is_answered & (answer_a != NULL) & (end_a != NULL), end_a - answer_a, NULL)
    arrays = {
        "start_ms": _ints(start, n),
        "wait_ms": wait.astype(np.int64),
        "soa_ms": soa.astype(np.int64),
        "talk_ms": talk.astype(np.int64),
        "ring": _ints(ring, n),
        "cost_micro": np.fromiter((_micro(p) for p in price), np.int64, n),
        "direction": np.fromiter((_small(v) for v in direction), np.int8, n),
        "hangup_by": np.fromiter((_small(v) for v in hangup_by), np.int8, n),
        "answered": is_answered.astype(np.int8),
        "queued": queued.astype(np.int8),
        "has_recording": np.fromiter((r is not None for r in record), np.int8, n),
    }
    words: dict[str, list[str | None]] = {}
    for name, values in zip(TEXT, texts, strict=True):
        arrays[name], words[name] = _encode(values)
    return Facts(arrays, words)


def concat(parts: Sequence[Facts], text: Iterable[str] = TEXT) -> Facts:
    """One set of facts from several, text codes renumbered into one dictionary per attribute.

    Renumbering costs a dictionary lookup per word per part, so only the ``text`` attributes
    a statistic filters or groups by are kept; the others are left out of the result.
    """
    if not parts:
        return empty()
    words: dict[str, list[str | None]] = {}
    arrays: dict[str, np.ndarray] = {}
    for name in text:
        index: dict[str | None, int] = {None: 0}
        pieces = []
        for part in parts:
            mapping = np.array(
                [index.setdefault(w, len(index)) for w in part.words[name]], dtype=np.int32
            )
            pieces.append(mapping[part.arrays[name]])
        arrays[name] = np.concatenate(pieces)
        words[name] = list(index)
    for name in (*WIDE, *SMALL):
        arrays[name] = np.concatenate([p.arrays[name] for p in parts])
    return Facts(arrays, words)


# -- storage --------------------------------------------------------------------------------------
# A snapshot is: 4-byte header length, a JSON header (row count and text dictionaries), then
# each column's raw little-endian bytes in NAMES order. Reading it back is a few
# ``frombuffer`` calls, with no per-call work.


def to_bytes(facts: Facts) -> bytes:
    """Serialise for a ``stat_hours`` row."""
    header = json.dumps({"n": len(facts), "words": facts.words}, ensure_ascii=False).encode()
    body = b"".join(facts.arrays[name].astype(_DTYPES[name]).tobytes() for name in NAMES)
    return struct.pack("<I", len(header)) + header + body


def from_bytes(data: bytes) -> Facts:
    """The facts :func:`to_bytes` stored."""
    (size,) = struct.unpack_from("<I", data)
    header = json.loads(data[4 : 4 + size])
    n = header["n"]
    offset = 4 + size
    arrays = {}
    for name in NAMES:
        dtype = _DTYPES[name]
        arrays[name] = np.frombuffer(data, dtype, n, offset)
        offset += n * dtype.itemsize
    return Facts(arrays, header["words"])
