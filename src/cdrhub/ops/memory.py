"""How the C allocator treats the large arrays statistics allocate and free on every report.

A report over a million calls allocates and frees dozens of NumPy arrays of several MB each.
By default glibc serves each from a fresh ``mmap`` and returns it on free, so every report
faults its pages in again; on the VMs cdrhub runs on that page-fault work took longer than the
arithmetic (a 30-day daily report: 140 ms with the defaults, 80 ms when freed memory is
kept; BENCHMARKS.md). Keeping freed memory costs resident memory: the process holds on to
up to the configured amount after its largest report.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger("cdrhub.memory")  # the name operators filter logs by; kept across moves

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc refuses a larger mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
_MMAP_THRESHOLD_MAX = 32 * 2**20


def keep_freed_memory(megabytes: int) -> bool:
    """Let glibc keep up to ``megabytes`` of freed heap for reuse; True if it took effect.

    0 leaves the allocator's defaults. Other C libraries (musl, macOS, Windows) are left
    alone: they have no such knobs, and the statistics are only slower there, not wrong.
    """
    if megabytes <= 0 or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    keep = megabytes * 2**20
    done = mallopt(_M_MMAP_THRESHOLD, min(keep, _MMAP_THRESHOLD_MAX)) == 1
    done = mallopt(_M_TRIM_THRESHOLD, keep) == 1 and done
    if not done:
        log.debug("glibc refused the allocator settings; statistics use its defaults")
    return done
