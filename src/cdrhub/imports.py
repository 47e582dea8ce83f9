"""Call logs that did not arrive by push: files, and pages pulled from NXCC's query API.

They go through exactly what a push goes through (``cdr.parse``, quarantine of what fails,
the idempotent write keyed by callId), with source ``import``. A pulled or imported record
identical to the stored call changes nothing but its "seen by import" mark; a different one
becomes a new raw version, the newest content winning as for a corrected push.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from cdrhub import cdr
from cdrhub.errors import CdrhubError
from cdrhub.store import Push, Rejected, Store
from cdrhub.store.schema import calls, import_marks

_BATCH = 500


@dataclass
class Tally:
    """What storing a set of records did."""

    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0

    def add(self, other: Tally) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def store_records(store: Store, records: Iterable[dict[str, Any]], *, origin: str) -> Tally:
    """Validate and store records in batches; ``origin`` (a file, ``nxcc``) goes with any
    quarantined one so an operator can tell where it came from."""
    tally = Tally()
    batch: list[dict[str, Any]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= _BATCH:
            tally.add(_store_batch(store, batch, origin))
            batch = []
    if batch:
        tally.add(_store_batch(store, batch, origin))
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


def _store_batch(store: Store, records: list[dict[str, Any]], origin: str) -> Tally:
    items: list[Push | Rejected] = []
    for record in records:
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            items.append(Push(cdr.parse(body), body, source="import"))
        except CdrhubError as error:
            call_id = record.get("callId") if isinstance(record, dict) else None
            items.append(
                Rejected(
                    body=body,
                    status=error.status,
                    reason=error.code,
                    detail=error.body(),
                    path=origin,
                    call_id=str(call_id) if call_id is not None else None,
                    source="import",
                )
            )
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
    keep = [i for i in items if id(i) not in skipped]
    results = store.write(keep) if keep else []
    tally = Tally(records=len(records), unchanged=len(same))
    for result in results:
        if isinstance(result, int):
            tally.quarantined += 1
        elif result == "created":
            tally.created += 1
        elif result == "updated":
            tally.updated += 1
        else:
            tally.unchanged += 1
    seen = [p.record.call_id for p in same]
    if seen:
        mark_seen(store, seen)
    return tally


def mark_seen(store: Store, call_ids: list[str]) -> None:
    """Note that the query API confirmed these calls as stored."""
    dialect = postgresql if store.kind == "postgresql" else sqlite
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


def read_file(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON (one object or an array), JSON Lines or CSV file.

    The format comes from the extension (``.json``, ``.jsonl``/``.ndjson``, ``.csv``); other
    files are sniffed. CSV headers are the push's field names (``callId``, ``agentName``...)
    as in the NXCC console's export, or the column names of cdrhub's own export.
    """
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    if suffix in (".jsonl", ".ndjson"):
        return _json_lines(text, path)
    if suffix == ".csv":
        return _csv(text, path)
    if suffix == ".json" or text.lstrip()[:1] in ("{", "["):
        return _json(text, path)
    raise ImportFileError(f"{path}: not JSON, JSON Lines or CSV (use one of those extensions)")


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
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise ImportFileError(f"{path}, line {number}: not JSON ({exc.args[0]})") from None


#: cdrhub's own CSV export: column to push field, times from their exact ``_ms`` twin.
_EXPORTED = {
    (f"{f.column}_ms" if f"{f.column}_ms" in calls.c else f.column): f.name for f in cdr.FIELDS
}


def _csv(text: str, path: Path) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "call_id" in header:  # cdrhub's own export
        for row in reader:
            yield _from_export_row(row)
        return
    names = {f.name for f in cdr.FIELDS}
    if not names & set(header):
        raise ImportFileError(
            f"{path}: no known column in the header ({', '.join(header[:5])}...); expected "
            "the push's field names such as callId, startTime, agentName"
        )
    for row in reader:
        yield {k: v for k, v in row.items() if k in names and v is not None}


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
