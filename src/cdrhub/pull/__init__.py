"""The other ways calls come in: NXCC's query API, files, and generated demo data.

``nxcc`` is the signed client of NXCC's call-log query API; ``backfill`` pulls ranges and
reconciles recent hours with it (finding calls NXCC never pushed); ``leader`` makes one process
per database run the scheduled reconcile; ``imports`` reads CSV/JSON files; ``simulate`` makes
coherent demo calls. All of them store through :mod:`cdrhub.store`, as the push path does.
"""

from cdrhub.pull import backfill, imports, leader, nxcc, simulate
from cdrhub.pull.backfill import SETTLE_SECONDS, Progress, ReconcileStatus
from cdrhub.pull.imports import (
    ImportFileError,
    Tally,
    differs,
    read_file,
    store_records,
    stored_rows,
)
from cdrhub.pull.leader import Leadership
from cdrhub.pull.nxcc import MAX_PAGE_SIZE, Client, NxccError, from_settings, sample

__all__ = [
    "MAX_PAGE_SIZE",
    "SETTLE_SECONDS",
    "Client",
    "ImportFileError",
    "Leadership",
    "NxccError",
    "Progress",
    "ReconcileStatus",
    "Tally",
    "backfill",
    "differs",
    "from_settings",
    "imports",
    "leader",
    "nxcc",
    "read_file",
    "sample",
    "simulate",
    "store_records",
    "stored_rows",
]
