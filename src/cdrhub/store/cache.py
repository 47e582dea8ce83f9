"""Decoded hourly snapshots kept in memory, so a repeated report skips reading and decoding them.

A 30-day report over a million calls reads 720 snapshots (about 37 MB); most of them have not
changed since the last report. An hour's snapshot is identified by its slot and its
``changes`` counter (``stat_hours``), which every write to the hour bumps in the same
transaction and which never goes back, so a cached hour is current exactly when its counter
equals the one the reader sees in its database snapshot: the answer stays the same as a scan
of the calls table, whatever another receiver wrote meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # only annotations: the store does not load NumPy (15 MB) for a server
    import numpy as np


class Facts(Protocol):
    """What the cache needs of a decoded hour (``cdrhub.reports.columns.Facts`` is one).

    The store holds this cache because a cached hour is valid exactly while the store's change
    mark for it stands; what an hour decodes to is the reports' business, so the cache knows
    only that shape, and the store never imports the reports.
    """

    arrays: dict[str, np.ndarray]
    words: dict[str, list[str | None]]


class FactCache:
    """A thread-safe LRU of ``slot -> (changes, Facts)``, bounded by the bytes it holds."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, tuple[int, Facts, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, slot: int, changes: int) -> Facts | None:
        """The hour's facts if cached at exactly this ``changes`` counter."""
        with self._lock:
            entry = self._entries.get(slot)
            if entry is None or entry[0] != changes:
                return None
            self._entries.move_to_end(slot)
            return entry[1]

    def put(self, slot: int, changes: int, facts: Facts) -> None:
        """Keep the hour's facts (read-only from now on), evicting the least recently used."""
        size = _size(facts)
        if size > self.max_bytes:
            return
        for array in facts.arrays.values():
            array.setflags(write=False)  # shared between readers: nobody may change it
        with self._lock:
            old = self._entries.pop(slot, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[slot] = (changes, facts, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, _, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    @property
    def size_bytes(self) -> int:
        """Bytes held now (an estimate: arrays exactly, words roughly)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)


def _size(facts: Facts) -> int:
    words = sum(len(w or "") + 50 for values in facts.words.values() for w in values)
    return sum(a.nbytes for a in facts.arrays.values()) + words
