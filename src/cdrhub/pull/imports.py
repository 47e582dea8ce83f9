"""Call logs that did not arrive by push: files, and pages pulled from NXCC's query API.

They go through exactly what a push goes through (``cdr.parse``, quarantine of what fails,
the idempotent write keyed by callId), with source ``import``. A pulled or imported record
identical to the stored call changes nothing but its "seen by import" mark; a different one
becomes a new raw version, the newest content winning as for a corrected push.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cdrhub import cdr
from cdrhub.errors import CdrhubError, FieldProblem, InvalidRecord
from cdrhub.store import Push, Rejected, Store
from cdrhub.store.schema import calls, import_marks, quarantine

_BATCH = 500


@dataclass
class Tally:
    """What storing a set of records did.

    ``quarantined`` counts the records refused (each is in the quarantine); of those,
    ``quarantined_before`` were already there, body for body, and were not added again.
    """

    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    quarantined_before: int = 0

    def add(self, other: Tally) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def store_records(
    store: Store,
    records: Iterable[dict[str, Any]],
    *,
    origin: str,
    spreadsheet: bool = False,
) -> Tally:
    """Validate and store records in batches; ``origin`` (a file, ``nxcc``) goes with any
    quarantined one so an operator can tell where it came from.

    ``spreadsheet`` (a CSV file) also refuses the values a spreadsheet program mangles
    (:func:`spreadsheet_problems`), which a push never carries.
    """
    tally = Tally()
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= _BATCH:
            tally.add(_store_batch(store, batch, origin, spreadsheet))
            batch = []
    if batch:
        tally.add(_store_batch(store, batch, origin, spreadsheet))
    return tally


#: What a record says about a call: every field's column (times by their exact ms).
COMPARED = tuple(f"{f.column}_ms" if f.column in cdr.TIME_COLUMNS else f.column for f in cdr.FIELDS)


def stored_rows(store: Store, call_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The :data:`COMPARED` columns of the stored calls among ``call_ids``."""
    ids = list(dict.fromkeys(call_ids))
    found: dict[str, dict[str, Any]] = {}
    columns = [calls.c.call_id, *(calls.c[c] for c in COMPARED if c != "call_id")]
    with store.read_engine.connect() as conn:
        for i in range(0, len(ids), 500):
            query = select(*columns).where(calls.c.call_id.in_(ids[i : i + 500]))
            found.update({r["call_id"]: dict(r) for r in conn.execute(query).mappings()})
    return found


def differs(record: cdr.CallRecord, row: dict[str, Any]) -> bool:
    """Whether a record says something else about a call than its stored row.

    Compared by value, not by the bytes of the body: a CSV says ``"0"`` where the push said
    ``0``, and NXCC's query API need not order or space its JSON as the push did.
    """
    return any(record.values.get(c) != row.get(c) for c in COMPARED)


def _store_batch(
    store: Store, records: list[dict[str, Any]], origin: str, spreadsheet: bool
) -> Tally:
    items = [_item(record, origin, spreadsheet) for record in records]
    refused = [i for i in items if isinstance(i, Rejected)]
    # A reconcile every 15 minutes sees the same invalid record at NXCC each time, and an
    # import run twice reads the same bad line twice: each is kept once.
    known = _quarantined_bodies(store, [r.body for r in refused])
    pushes = [i for i in items if isinstance(i, Push)]
    rows = stored_rows(store, (p.record.call_id for p in pushes))
    same = [
        p
        for p in pushes
        if p.record.call_id in rows and not differs(p.record, rows[p.record.call_id])
    ]
    # What the database already holds, value for value, is not written again (no new raw
    # version, no delivery counted): only its "seen by import" mark changes.
    skipped = {id(p) for p in same}
    keep: list[Push | Rejected] = []
    for item in items:
        if id(item) in skipped:
            continue
        if isinstance(item, Rejected):
            if item.body in known:  # quarantined before, or earlier in this batch
                continue
            known.add(item.body)
        keep.append(item)
    results = store.write(keep) if keep else []
    tally = Tally(
        records=len(records),
        unchanged=len(same),
        quarantined=len(refused),
        quarantined_before=len(refused) - sum(isinstance(r, int) for r in results),
    )
    for result in results:
        if result == "created":
            tally.created += 1
        elif result == "updated":
            tally.updated += 1
        elif not isinstance(result, int):
            tally.unchanged += 1
    seen = [p.record.call_id for p in same]
    if seen:
        mark_seen(store, seen)
    return tally


def _item(record: Any, origin: str, spreadsheet: bool) -> Push | Rejected:
    """A record as a push to store, or as a refused body for the quarantine."""
    body = cdr.encode(record)
    try:
        return Push(_parse(body, record, spreadsheet), body, source="import")
    except CdrhubError as error:
        call_id = record.get("callId") if isinstance(record, dict) else None
        return Rejected(
            body=body,
            status=error.status,
            reason=error.code,
            detail=error.body(),
            path=origin,
            call_id=str(call_id) if call_id is not None else None,
            source="import",
        )


def _parse(body: bytes, record: Any, spreadsheet: bool) -> cdr.CallRecord:
    """What a push goes through, plus, for a spreadsheet's rows, its own traps, all at once."""
    problems = spreadsheet_problems(record) if spreadsheet and isinstance(record, dict) else []
    try:
        parsed = cdr.parse(body)
    except InvalidRecord as error:
        if not problems:
            raise
        problems = [*error.fields, *(p for p in problems if p not in error.fields)]
    if problems:
        names = ", ".join(dict.fromkeys(p.field for p in problems))
        raise InvalidRecord(f"invalid value for {names}", problems)
    return parsed


def _quarantined_bodies(store: Store, bodies: list[bytes]) -> set[bytes]:
    """Those of ``bodies`` the quarantine already holds."""
    wanted = list(dict.fromkeys(bodies))
    found: set[bytes] = set()
    with store.read_engine.connect() as conn:
        for i in range(0, len(wanted), 100):
            query = select(quarantine.c.body).where(quarantine.c.body.in_(wanted[i : i + 100]))
            found.update(bytes(r[0]) for r in conn.execute(query))
    return found


#: Epoch-millisecond fields; a spreadsheet shows 13 digits as ``1.764E+12`` and saves that.
_TIME_FIELDS = tuple(f.name for f in cdr.FIELDS if f.column in cdr.TIME_COLUMNS)
#: Text fields that are numbers to a spreadsheet, which then rounds them the same way.
_ID_FIELDS = ("callId", "caller", "callee", "orderId", "taskId")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SCIENTIFIC = re.compile(r"[+-]?\d+(\.\d+)?[eE][+-]?\d+")
_ROUNDED = (
    "it looks like a spreadsheet's display of a long number (scientific notation or "
    "decimals), which has lost digits: format the column as text (ids) or as a number "
    "without decimals (times) in the spreadsheet, and export again"
)


def spreadsheet_problems(record: dict[str, Any]) -> list[FieldProblem]:
    """Values of a CSV row that a spreadsheet rounded (``1.764E+12``, ``1.68836E+18``).

    A push carries times as whole numbers and ids as text; the same call saved by Excel has
    them rounded to six significant digits, silently wrong. Refused, so they land in the
    quarantine with the reason instead of in the statistics.
    """
    problems = []
    for name in _TIME_FIELDS:
        value = record.get(name)
        if (
            isinstance(value, str)
            and _NUMBER.fullmatch(text := value.strip())
            and not text.isdigit()
        ):
            problems.append(FieldProblem(name, value, f"epoch milliseconds as digits; {_ROUNDED}"))
    for name in _ID_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            problems.append(FieldProblem(name, value, f"the id as NXCC wrote it; {_ROUNDED}"))
    return problems


def mark_seen(store: Store, call_ids: list[str]) -> None:
    """Note that the query API confirmed these calls as stored."""
    # The database's own dialect module (for ON CONFLICT), imported here: the PostgreSQL one
    # is 2 MB that every server on SQLite would otherwise load at start.
    dialect = importlib.import_module(f"sqlalchemy.dialects.{store.kind}")
    now = datetime.now(UTC)
    statement = dialect.insert(import_marks).values(
        [{"call_id": c, "seen_at": now} for c in dict.fromkeys(call_ids)]
    )
    statement = statement.on_conflict_do_update(
        index_elements=["call_id"], set_={"seen_at": statement.excluded.seen_at}
    )
    with store.writing() as conn:
        conn.execute(statement)


# -- files ---------------------------------------------------------------------------------------


class ImportFileError(Exception):
    """A file that cannot be read as call logs at all (not one bad record: those quarantine)."""


@dataclass(frozen=True)
class FileRecords:
    """A file's records, the whole file already read and checked: nothing in it can fail as
    a file any more, so storing it never stops half-way for a bad line.

    ``spreadsheet``: the records come from a CSV, which a spreadsheet may have saved; store
    them with ``store_records(..., spreadsheet=True)``.
    """

    path: Path
    records: Iterable[dict[str, Any]]
    spreadsheet: bool = False


def read_file(path: Path) -> FileRecords:
    """The records of a JSON (one object or an array), JSON Lines or CSV file.

    The format comes from the extension (``.json``, ``.jsonl``/``.ndjson``, ``.csv``/``.tsv``);
    other files are sniffed. CSV headers are the push's field names (``callId``,
    ``agentName``...) as in the NXCC console's export, or the column names of cdrhub's own
    export. Raises :class:`ImportFileError` for a file that is not call logs, before any of
    it is stored.
    """
    suffix = path.suffix.lower()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read it ({exc.strerror})") from None
    text = _decode(data, path)
    if suffix in (".jsonl", ".ndjson"):
        return FileRecords(path, _json_lines(text, path))
    if suffix in (".csv", ".tsv") or (suffix != ".json" and _looks_like_csv(text)):
        return FileRecords(path, _csv(text, path), spreadsheet=True)
    if suffix == ".json" or text.lstrip()[:1] in ("{", "["):
        return FileRecords(path, _json(text, path))
    raise ImportFileError(f"{path}: not JSON, JSON Lines or CSV (use one of those extensions)")


def _decode(data: bytes, path: Path) -> str:
    """The text of a file as the programs that write call logs save it.

    UTF-8 (with or without the BOM Excel writes); UTF-16 with its BOM (Excel's "Unicode
    text"); else GB18030, the superset of GBK in which Excel on Chinese Windows saves CSV.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path}: starts as UTF-16 but is not ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8 = exc
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path}: not UTF-8, UTF-16 or GBK/GB18030 text ({utf8}); save it as UTF-8"
        ) from None


def _json(text: str, path: Path) -> Iterator[dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError:
        return _json_lines(text, path)  # several objects, one per line, in a .json file
    if isinstance(data, list):
        return iter(data)
    if isinstance(data, dict):
        return iter([data])
    raise ImportFileError(f"{path}: JSON must be an object or an array of objects")


def _json_lines(text: str, path: Path) -> Iterator[dict[str, Any]]:
    """Every line checked now (a bad line 701 must not leave 700 stored), decoded as stored."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for number, line in lines:
        try:
            json.loads(line)
        except ValueError as exc:
            raise ImportFileError(f"{path}, line {number}: not JSON ({exc.args[0]})") from None
    return (json.loads(line) for _, line in lines)


#: cdrhub's own CSV export: column to push field, times from their exact ``_ms`` twin.
_EXPORTED = {
    (f"{f.column}_ms" if f"{f.column}_ms" in calls.c else f.column): f.name for f in cdr.FIELDS
}
_FIELD_NAMES = frozenset(f.name for f in cdr.FIELDS)


def _delimiter(header_line: str) -> str:
    """Tab for a spreadsheet's "Unicode text" or a .tsv, else a comma."""
    return "\t" if header_line.count("\t") > header_line.count(",") else ","


def _looks_like_csv(text: str) -> bool:
    header = text.split("\n", 1)[0]
    return bool(_FIELD_NAMES & {c.strip() for c in header.split(_delimiter(header))})


def _csv(text: str, path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a CSV, checked as a whole first (a broken quote fails before anything)."""
    delimiter = _delimiter(text.split("\n", 1)[0])
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise ImportFileError(f"{path}: not a readable CSV ({exc})") from None
    header = rows[0] if rows else []
    body = (r for r in rows[1:] if any(cell.strip() for cell in r))
    if "call_id" in header:  # cdrhub's own export
        return (_from_export_row(dict(zip(header, r, strict=False))) for r in body)
    if not _FIELD_NAMES & set(header):
        raise ImportFileError(
            f"{path}: no known column in the header ({', '.join(header[:5])}...); expected "
            "the push's field names such as callId, startTime, agentName"
        )
    # Every named column is kept, known or not: the raw body is what NXCC's console said,
    # and a column a newer platform version added is not ours to drop.
    return ({k: v for k, v in zip(header, r, strict=False) if k} for r in body)


def _from_export_row(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for column, name in _EXPORTED.items():
        value = row.get(column)
        if value is None:
            continue
        # The export put a ' before text a spreadsheet would run as a formula.
        if value.startswith("'") and value[1:2] in ("=", "+", "-", "@", "\t", "\r"):
            value = value[1:]
        record[name] = value
    return record
