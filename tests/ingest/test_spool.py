"""The spool: pushes keep getting 200s while the database is away, and land when it is back."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdrhub import cdr
from cdrhub.app import create_app
from cdrhub.ingest.spool import Spool, read_records
from cdrhub.settings import Settings
from cdrhub.store import Push, Rejected, Store, open_store
from tests.helpers import TOKEN


def _push(payload: dict[str, Any]) -> Push:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Push(cdr.parse(body), body)


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class TestSpoolFile:
    """The file format: synced lines with a checksum, read back whatever a crash left."""

    def test_records_round_trip(self, tmp_path: Path) -> None:
        """Pushes and refused bodies come back as they went in, Chinese text included."""
        spool = Spool(tmp_path)
        rejected = Rejected(
            body=b"{",
            status=400,
            reason="bad_json",
            detail={"error": "x"},
            headers=[("content-type", "application/json")],
        )
        spool.append([_push({"callId": "s-1", "intent": "转人工-成功"}), rejected])
        items = list(read_records(spool.path))
        assert isinstance(items[0], Push) and items[0].record.values["intent"] == "转人工-成功"
        assert isinstance(items[1], Rejected) and items[1].body == b"{"
        assert items[1].headers == [("content-type", "application/json")]
        assert spool.status()["pending"] == 2

    def test_torn_and_corrupt_lines_are_skipped(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A crash mid-write leaves a torn last line: skipped with a log line, not a crash."""
        spool = Spool(tmp_path)
        spool.append([_push({"callId": "ok-1"}), _push({"callId": "ok-2"})])
        spool.close()
        data = spool.path.read_bytes()
        first, second = data.splitlines(keepends=True)
        damaged = first[:20] + b"X" + first[21:] + second + second[:30]
        spool.path.write_bytes(damaged)
        items = list(read_records(spool.path))
        assert [i.record.call_id for i in items if isinstance(i, Push)] == ["ok-2"]
        assert "a corrupt line 1" in caplog.text and "a torn last line 3" in caplog.text


@pytest.fixture
def locked_sqlite(tmp_path: Path) -> Iterator[tuple[Settings, sqlite3.Connection]]:
    """Settings on a SQLite file, and a connection that can hold its write lock."""
    url = f"sqlite:///{tmp_path}/spooled.db"
    setup = open_store(url)
    setup.upgrade()
    setup.close()
    settings = Settings(
        database_url=url, tokens=[TOKEN], data_dir=tmp_path / "data", sqlite_busy_timeout_ms=100
    )
    blocker = sqlite3.connect(tmp_path / "spooled.db", isolation_level=None)
    yield settings, blocker
    blocker.close()


def _send(client: TestClient, payload: dict[str, Any]) -> Any:
    return client.post("/cc/callback", json=payload, headers={"token": TOKEN})


def test_pushes_are_spooled_while_locked_and_stored_after(
    locked_sqlite: tuple[Settings, sqlite3.Connection],
) -> None:
    """200 'spooled' while the file is locked; then stored in order, the correction winning."""
    settings, blocker = locked_sqlite
    store = open_store(settings.database_url)
    with TestClient(create_app(settings)) as client:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            first = _send(client, {"callId": "sp-1", "callDuration": 5})
            corrected = _send(client, {"callId": "sp-1", "callDuration": 9})
            other = _send(client, {"callId": "sp-2"})
            assert [r.json()["result"] for r in (first, corrected, other)] == ["spooled"] * 3
            ready = client.get("/readyz").json()
            assert ready["checks"]["spool"]["pending"] == 3
        finally:
            blocker.execute("ROLLBACK")
        _wait_for(lambda: store.count_calls() == 2)
        row = store.get_call("sp-1")
        assert row is not None and row["call_duration"] == 9 and row["version_count"] == 2
        _wait_for(lambda: client.get("/readyz").json()["checks"]["spool"]["pending"] == 0)
        after = _send(client, {"callId": "sp-3"})
        assert after.json()["result"] == "created"
    store.close()


class DatabaseLock:
    """A real lock another client holds on the test database: SQLite's write lock, or
    PostgreSQL's table lock (the app's URL sets a short ``lock_timeout``, so a blocked write
    fails, as SQLite's busy timeout makes it, instead of waiting forever)."""

    def __init__(self, kind: str, url: str, path: Path | None) -> None:
        self.kind = kind
        if kind == "sqlite":
            assert path is not None
            self._sqlite = sqlite3.connect(path, isolation_level=None)
        else:
            import psycopg

            self._pg = psycopg.connect(url)

    def hold(self) -> None:
        if self.kind == "sqlite":
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg.execute("LOCK TABLE calls IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if self.kind == "sqlite":
            self._sqlite.execute("ROLLBACK")
        else:
            self._pg.rollback()

    def close(self) -> None:
        if self.kind == "sqlite":
            self._sqlite.close()
        else:
            self._pg.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lockable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Settings, DatabaseLock]]:
    """Settings whose writes fail fast under a lock, and the lock, on either database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/spooled.db"
        plain, path = url, tmp_path / "spooled.db"
    else:
        from tests.helpers import empty_postgres

        plain = request.getfixturevalue("postgres_database")
        empty_postgres(plain)
        url, path = plain + "?options=-c%20lock_timeout%3D200", None
    setup = open_store(plain)
    setup.upgrade()
    setup.close()
    settings = Settings(
        database_url=url, tokens=[TOKEN], data_dir=tmp_path / "data", sqlite_busy_timeout_ms=100
    )
    lock = DatabaseLock(request.param, plain, path)
    yield settings, lock
    lock.close()


def test_a_correction_sent_as_the_database_comes_back_is_not_undone(
    lockable: tuple[Settings, DatabaseLock],
) -> None:
    """The first version is spooled under a real lock; the lock goes; the correction comes at
    once, before the writer's own retry. It must go behind the spooled version, not past it:
    stored first, the spooled callDuration 5 would land after it and undo the 9."""
    settings, lock = lockable
    store = open_store(settings.database_url)
    with TestClient(create_app(settings)) as client:
        lock.hold()
        try:
            first = _send(client, {"callId": "undo-1", "callDuration": 5})
        finally:
            lock.release()
        assert first.json()["result"] == "spooled"
        corrected = _send(client, {"callId": "undo-1", "callDuration": 9})
        assert corrected.status_code == 200
        # Behind the 5: spooled after it (the database was just tried) or stored after it.
        assert corrected.json()["result"] in ("spooled", "updated")
        _wait_for(lambda: client.get("/readyz").json()["checks"]["spool"]["pending"] == 0)
        row = store.get_call("undo-1")
        assert row is not None and row["call_duration"] == 9 and row["version_count"] == 2
    store.close()


def test_spool_left_by_a_dead_process_is_drained_on_start(
    locked_sqlite: tuple[Settings, sqlite3.Connection],
) -> None:
    """Records a killed process had spooled (and answered 200 for) are stored by the next one."""
    settings, _ = locked_sqlite
    orphan = Spool(settings.data_dir / "spool")
    orphan.append([_push({"callId": "orphan-1"}), _push({"callId": "orphan-2"})])
    orphan.close()  # the process is gone: no lock held on its file any more
    store = open_store(settings.database_url)
    with TestClient(create_app(settings)):
        _wait_for(lambda: store.count_calls() == 2)
    assert not orphan.path.exists()
    store.close()


def test_without_a_spool_an_unavailable_database_is_503(
    locked_sqlite: tuple[Settings, sqlite3.Connection],
) -> None:
    """With the spool turned off, a locked database is a 503 that NXCC will retry."""
    settings, blocker = locked_sqlite
    settings = settings.model_copy(update={"spool": False})
    with TestClient(create_app(settings)) as client:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            response = _send(client, {"callId": "n-1"})
        finally:
            blocker.execute("ROLLBACK")
        assert response.status_code == 503
        assert response.json()["error"] == "store_unavailable"


def test_refused_bodies_are_spooled_for_quarantine_too(
    locked_sqlite: tuple[Settings, sqlite3.Connection],
) -> None:
    """A 422 while the database is away is still kept, and reaches the quarantine later."""
    settings, blocker = locked_sqlite
    store = open_store(settings.database_url)
    with TestClient(create_app(settings)) as client:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            refused = _send(client, {"callId": "bad", "direction": 7})
        finally:
            blocker.execute("ROLLBACK")
        assert refused.status_code == 422
        assert "kept for quarantine" in refused.json()["detail"]
        _wait_for(lambda: len(store.quarantined()) == 1)
    assert store.quarantined()[0]["reason"] == "invalid_record"
    store.close()


def test_postgres_outage_is_bridged_by_the_spool(postgres_database: str, tmp_path: Path) -> None:
    """PostgreSQL unreachable: 200 'spooled'; reachable again: the calls are in it."""
    from sqlalchemy.engine import make_url

    from tests.helpers import empty_postgres
    from tests.helpers.proxy import TcpProxy

    empty_postgres(postgres_database)
    direct: Store = open_store(postgres_database)
    direct.upgrade()
    target = make_url(postgres_database)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(database_url=proxied, tokens=[TOKEN], data_dir=tmp_path)
    try:
        with TestClient(create_app(settings)) as client:
            assert _send(client, {"callId": "pg-1"}).json()["result"] == "created"
            proxy.stop()
            down = _send(client, {"callId": "pg-2"})
            assert down.status_code == 200 and down.json()["result"] == "spooled"
            proxy.start()
            _wait_for(lambda: direct.count_calls() == 2)
    finally:
        proxy.stop()
        direct.close()
