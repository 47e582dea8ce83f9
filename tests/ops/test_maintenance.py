"""Retention (`cdrhub prune`) and online backup (`cdrhub backup`)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdrhub import cdr
from cdrhub.cli import main
from cdrhub.ops.maintenance import parse_age
from cdrhub.settings import Settings
from cdrhub.store import Push, Rejected, Store


def _push(call_id: str, start: datetime | None) -> Push:
    payload: dict[str, object] = {"callId": call_id}
    if start is not None:
        payload["startTime"] = int(start.timestamp() * 1000)
    body = json.dumps(payload).encode()
    return Push(cdr.parse(body), body)


def _env(settings: Settings) -> dict[str, str]:
    return {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}


def test_prune_deletes_only_what_is_older_than_the_age(settings: Settings, store: Store) -> None:
    """Old calls (with raw versions) and old quarantine entries go; recent ones stay."""
    now = datetime.now(UTC)
    old = now - timedelta(days=500)
    store.write(
        [
            _push("old-1", old),
            _push("old-1", old + timedelta(seconds=1)),  # a correction: two raw versions
            _push("new-1", now - timedelta(days=10)),
            _push("no-start", None),  # received now: kept
            Rejected(body=b"{", status=400, reason="bad_json", detail={}, received_at=old),
            Rejected(body=b"[", status=400, reason="bad_json", detail={}),
        ]
    )
    dry = CliRunner().invoke(
        main, ["prune", "--older-than", "400d", "--dry-run"], env=_env(settings)
    )
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 calls, 2 raw versions, 1 quarantine entries" in dry.output
    assert store.count_calls() == 3
    done = CliRunner().invoke(main, ["prune", "--older-than", "400d"], env=_env(settings))
    assert "deleted 1 calls, 2 raw versions, 1 quarantine entries" in done.output
    assert store.get_call("old-1") is None and store.raw_versions("old-1") == []
    assert store.get_call("new-1") is not None and store.get_call("no-start") is not None
    assert [e["body"] for e in store.quarantined()] == [b"["]


def test_prune_ages_are_explained_when_wrong() -> None:
    """Ages read like 400d, 12w, 36h; anything else names the expected form."""
    assert parse_age("400d") == timedelta(days=400) and parse_age("36h") == timedelta(hours=36)
    with pytest.raises(ValueError, match="400d"):
        parse_age("a year")


def test_backup_copies_sqlite_consistently(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    """`cdrhub backup` writes a complete, openable copy (SQLite) or says to use pg_dump."""
    store.write([_push(f"b-{i}", datetime.now(UTC)) for i in range(50)])
    target = tmp_path / "backups" / "copy.db"
    result = CliRunner().invoke(main, ["backup", str(target)], env=_env(settings))
    if store.kind == "postgresql":
        assert result.exit_code == 1 and "pg_dump" in result.output
        return
    assert result.exit_code == 0, result.output
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT count(*) FROM calls").fetchone()[0] == 50
    again = CliRunner().invoke(main, ["backup", str(target)], env=_env(settings))
    assert again.exit_code == 1 and "exists" in again.output
