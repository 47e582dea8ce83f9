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

# The layout lives in a module without NumPy, which the server's snapshot refresh uses.
from cdrhub.reports.layout import NAMES, NULL, SMALL, TEXT, WIDE
from cdrhub.reports.layout import SOURCE as SOURCE
from cdrhub.reports.layout import micro as _micro
from cdrhub.reports.layout import small as _small

_DTYPES = {
    **{name: np.dtype("<i4") for name in TEXT},
    **{name: np.dtype("i1") for name in SMALL},
    **{name: np.dtype("<i8") for name in WIDE},
}


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
