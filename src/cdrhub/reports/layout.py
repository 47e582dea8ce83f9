"""The facts' columns and an hour's stored snapshot, written from rows without NumPy.

:mod:`cdrhub.reports.columns` holds the facts as NumPy arrays, for statistics. The server's
background refresh (:func:`cdrhub.reports.rollup.refresh`) only turns an hour's calls into the
bytes of its snapshot, and does that here with the standard library: a server that receives
pushes and serves no report then never loads NumPy (15 MB of its memory). The bytes are the
same as ``columns.to_bytes(columns.from_rows(rows))``, by the same rules (docs/metrics.md) with
NumPy's int64 arithmetic; tests/reports/test_rollup.py holds the two to that.
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column

from cdrhub.store.schema import calls

#: Marks a missing integer (NumPy integers have no null): int64's minimum.
NULL = -(2**63)
_INT64_MAX = 2**63 - 1

#: Text attributes, dictionary encoded: code 0 always means "not given".
TEXT = ("agent", "task_id", "intent", "hangup_reason", "call_status")
#: Small integer attributes (-1: not given).
SMALL = ("direction", "hangup_by", "answered", "queued", "has_recording")
#: Integer measures (:data:`NULL`: not given).
WIDE = ("start_ms", "wait_ms", "soa_ms", "talk_ms", "ring", "cost_micro")
#: The columns of a snapshot, in the order it stores them.
NAMES = (*WIDE, *SMALL, *TEXT)

#: The ``calls`` columns facts are derived from, in the order :func:`encode` expects.
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

# array's typecodes for the snapshot's <i8, i1 and <i4 columns ("i" is 4 bytes wherever
# CPython runs; checked so that a platform where it is not fails here, not in a report).
_WIDE, _SMALL, _CODE = "q", "b", "i"
assert array(_CODE).itemsize == 4 and array(_WIDE).itemsize == 8
_SWAP = sys.byteorder != "little"


def micro(price: float | None) -> int:
    """A price as integer micro-units (:data:`NULL`: none)."""
    if price is None or price != price:  # NaN
        return NULL
    value = price * 1_000_000
    # Stored before cdrhub bounded prices (or written by hand): infinite or past int64, clamped.
    if not -_INT64_MAX < value < _INT64_MAX:
        return _INT64_MAX if value > 0 else -_INT64_MAX
    return max(-_INT64_MAX, min(_INT64_MAX, round(value)))


def small(value: int | None) -> int:
    """A choice (direction, hangupBy) as its code; -1 for none, and for a value too big for a
    code (a hand-written row; cdrhub accepts 0 to 2): it has no meaning to count under."""
    return value if type(value) is int and 0 <= value <= 127 else -1


def encode(rows: Sequence[Sequence[Any]]) -> tuple[int, bytes]:
    """``(calls, snapshot)`` of ``calls`` rows selected as :data:`SOURCE`.

    The snapshot is ``columns.to_bytes(columns.from_rows(rows))``: a 4-byte header length,
    a JSON header (the row count and the text dictionaries), then each column's little-endian
    bytes in :data:`NAMES` order. The rules are :func:`cdrhub.reports.columns.from_rows`'s,
    column by column as there (a loop per call was 1.7 times as slow).
    """
    n = len(rows)
    (start, direction, answered, hangup_by, record, in_q, out_q, answer, end, queue_dur,
     ring, price, *texts) = zip(*rows, strict=True) if rows else [()] * len(SOURCE)  # fmt: skip
    in_q, out_q, answer = _ints(in_q), _ints(out_q), _ints(answer)
    end, queue_dur = _ints(end), _ints(queue_dur)
    is_answered = [a is True or a == 1 for a in answered]
    left = [
        o if o != NULL else a if a != NULL else e
        for o, a, e in zip(out_q, answer, end, strict=True)
    ]
    wait = [
        (w - q if w != NULL else d * 1000 if d != NULL else NULL) if q != NULL else NULL
        for q, w, d in zip(in_q, left, queue_dur, strict=True)
    ]
    soa = [
        a - q if q != NULL and yes and a != NULL else NULL
        for q, a, yes in zip(in_q, answer, is_answered, strict=True)
    ]
    talk = [
        e - a if yes and a != NULL and e != NULL else NULL
        for a, e, yes in zip(answer, end, is_answered, strict=True)
    ]
    columns = [
        array(_WIDE, _ints(start)),
        _int64(wait),
        _int64(soa),
        _int64(talk),
        array(_WIDE, _ints(ring)),
        array(_WIDE, [micro(p) for p in price]),
        array(_SMALL, [small(v) for v in direction]),
        array(_SMALL, [small(v) for v in hangup_by]),
        array(_SMALL, is_answered),
        array(_SMALL, [q != NULL for q in in_q]),
        array(_SMALL, [r is not None for r in record]),
    ]
    words = {}
    for name, values in zip(TEXT, texts, strict=True):
        index: dict[Any, int] = {None: 0}
        columns.append(array(_CODE, [index.setdefault(v, len(index)) for v in values]))
        words[name] = list(index)
    header = json.dumps({"n": n, "words": words}, ensure_ascii=False).encode()
    if _SWAP:
        for column in columns:
            column.byteswap()
    body = b"".join(column.tobytes() for column in columns)
    return n, struct.pack("<I", len(header)) + header + body


def _ints(values: Sequence[Any]) -> list[int]:
    """int64s as NumPy's ``fromiter`` makes them (None: :data:`NULL`): ``int()`` of what is
    not an int (a float is truncated, as a hand-written row may hold), OverflowError past int64.
    """
    found = [NULL if v is None else v for v in values]
    if all(type(v) is int for v in found):
        array(_WIDE, found)  # raises OverflowError past int64, as NumPy does
        return found
    return [_int(v) for v in found]  # one by one, to fail at the value NumPy fails at


def _int(value: Any) -> int:
    number = value if type(value) is int else int(value)
    if not NULL <= number <= _INT64_MAX:
        raise OverflowError("Python int too large to convert to C long")
    return number


def _int64(values: list[int]) -> array[int]:
    """The int64 column of ``values``, wrapped around past int64 as NumPy's arithmetic is."""
    try:
        return array(_WIDE, values)
    except OverflowError:
        return array(_WIDE, [(v - NULL) % 2**64 + NULL for v in values])
