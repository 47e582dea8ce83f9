"""The push journal: a 200 after a synced append, applied to the tables in the background."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdrhub import cdr
from cdrhub.app import create_app
from cdrhub.ingest import Journal
from cdrhub.ingest.journal import frame
from cdrhub.settings import Settings
from cdrhub.store import Push, Store, open_store
from tests.helpers import TOKEN


def _push(payload: dict[str, Any]) -> Push:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Push(cdr.parse(body), body)


def _wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _die(journal: Journal) -> None:
    """What kill -9 leaves: the files as they are, their locks released, no applier."""
    for segment in journal._segments:
        os.close(segment.fd)


def test_versions_are_applied_in_order_and_the_offset_with_them(
    store: Store, tmp_path: Path
) -> None:
    """Two versions of a call in one group: the correction wins; the offset is the file's end."""
    journal = Journal(tmp_path / "journal", store)
    journal.append([_push({"callId": "j-1", "callDuration": 5}), _push({"callId": "j-2"})])
    journal.append([_push({"callId": "j-1", "callDuration": 9})])
    journal.start()
    _wait_for(lambda: journal.status()["pending_bytes"] == 0)
    row = store.get_call("j-1")
    assert row is not None and row["call_duration"] == 9 and row["version_count"] == 2
    assert [v["body"] for v in store.raw_versions("j-1")] == [
        b'{"callId": "j-1", "callDuration": 5}',
        b'{"callId": "j-1", "callDuration": 9}',
    ]
    name = journal._current.name
    assert store.journal_offsets()[name] == (tmp_path / "journal" / name).stat().st_size
    assert journal.status()["pending_records"] == 0
    journal.stop()
    assert store.journal_offsets() == {} and list((tmp_path / "journal").iterdir()) == []


def test_restart_applies_exactly_the_unapplied_tail(store: Store, tmp_path: Path) -> None:
    """A crash after the first record's commit: the next start stores the rest, none twice."""
    directory = tmp_path / "journal"
    first = Journal(directory, store)
    a, b, c = _push({"callId": "t-a"}), _push({"callId": "t-b"}), _push({"callId": "t-c"})
    first.append([a, b])
    first.append([c])
    name = first._current.name
    # The applier committed a (and its offset, in the same transaction), then the process died.
    store.write([a], progress=(name, len(frame(a))))
    _die(first)
    second = Journal(directory, store)
    second.start()
    _wait_for(lambda: not (directory / name).exists())
    second.stop()
    for call_id in ("t-a", "t-b", "t-c"):
        row = store.get_call(call_id)
        assert row is not None and row["delivery_count"] == 1, call_id
    assert store.journal_offsets() == {}


def test_a_torn_last_record_is_skipped(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -9 mid-append leaves half a record (never synced, never answered): skipped."""
    directory = tmp_path / "journal"
    first = Journal(directory, store)
    first.append([_push({"callId": "torn-1"}), _push({"callId": "torn-2"})])
    path = first._current.path
    _die(first)
    with path.open("ab") as handle:
        handle.write(frame(_push({"callId": "torn-3"}))[:-5])
    second = Journal(directory, store)
    second.start()
    _wait_for(lambda: not path.exists())
    second.stop()
    assert store.get_call("torn-1") is not None and store.get_call("torn-2") is not None
    assert store.get_call("torn-3") is None
    assert "torn last record" in caplog.text


def test_a_rotated_file_is_removed_once_applied(store: Store, tmp_path: Path) -> None:
    """Past ``segment_bytes`` a new file starts; the old one goes once its rows are in."""
    directory = tmp_path / "journal"
    journal = Journal(directory, store, segment_bytes=1)
    journal.start()
    for number in range(5):
        journal.append([_push({"callId": f"rot-{number}"})])
    _wait_for(lambda: journal.status()["pending_bytes"] == 0 and journal.status()["files"] == 1)
    assert store.count_calls() == 5
    assert len(list(directory.glob("journal-*.log"))) == 1
    journal.stop()


@pytest.fixture
def journal_settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path}/journal.db"
    setup = open_store(url)
    setup.upgrade()
    setup.close()
    return Settings(
        database_url=url,
        tokens=[TOKEN],
        data_dir=tmp_path / "data",
        sqlite_busy_timeout_ms=100,
        journal=True,
    )


def _send(client: TestClient, payload: dict[str, Any]) -> Any:
    return client.post("/cc/callback", json=payload, headers={"token": TOKEN})


def test_a_push_is_accepted_and_then_readable(journal_settings: Settings) -> None:
    """The 200 says ``accepted``; the call is readable through the API moments later."""
    with TestClient(create_app(journal_settings)) as client:
        answer = _send(client, {"callId": "read-1", "callDuration": 7})
        assert answer.status_code == 200 and answer.json()["result"] == "accepted"
        store = client.app.state.runtime.store  # type: ignore[attr-defined]
        _wait_for(lambda: store.get_call("read-1") is not None)
        assert store.get_call("read-1")["call_duration"] == 7
        # A retry of the same body is still one call, counted as a second delivery.
        assert _send(client, {"callId": "read-1", "callDuration": 7}).status_code == 200
        _wait_for(lambda: store.get_call("read-1")["delivery_count"] == 2)
        assert store.count_calls() == 1


def test_refused_bodies_are_still_answered_and_quarantined(journal_settings: Settings) -> None:
    """Validation happens before the 200: a bad body gets its 4xx and a quarantine entry."""
    with TestClient(create_app(journal_settings)) as client:
        answer = _send(client, {"callId": 5, "callDuration": "long"})
        assert answer.status_code == 422
        assert "kept in quarantine as #" in answer.json()["detail"]
        store = client.app.state.runtime.store  # type: ignore[attr-defined]
        assert len(store.quarantined()) == 1


def test_applier_lag_is_visible_in_readyz_and_metrics(journal_settings: Settings) -> None:
    """While the database is locked, pushes are accepted and the lag shows; then it drains."""
    path = journal_settings.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    with TestClient(create_app(journal_settings)) as client:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            for number in range(3):
                answer = _send(client, {"callId": f"lag-{number}"})
                assert answer.json()["result"] == "accepted"
            time.sleep(0.3)
            journal = client.get("/readyz").json()["checks"]["journal"]
            assert journal["pending_records"] == 3 and journal["pending_bytes"] > 0
            assert journal["seconds_behind"] > 0
            metrics = client.get("/metrics").text
            assert "cdrhub_journal_pending_records 3.0" in metrics
        finally:
            blocker.execute("ROLLBACK")
        _wait_for(lambda: client.get("/readyz").json()["checks"]["journal"]["pending_bytes"] == 0)
        store = client.app.state.runtime.store  # type: ignore[attr-defined]
        assert store.count_calls() == 3
        assert "cdrhub_journal_seconds_behind 0.0" in client.get("/metrics").text
    blocker.close()


def _applier_of(pid: int) -> int | None:
    """The pid of the journal applier process the server ``pid`` started, if it runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            parts = cmdline.read_bytes().split(b"\0")
            stat = (cmdline.parent / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and any(b"cdrhub.ingest.applier" in part for part in parts):
            return int(cmdline.parent.name)
    return None


def _niceness(pid: int) -> set[int]:
    """The ``nice`` values of every thread of process ``pid``."""
    values = set()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        values.add(int(stat.read_text().rsplit(")", 1)[1].split()[16]))
    return values


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the applier process in /proc")
def test_the_applier_process_is_started_again_when_it_dies(
    serve: Any, store: Store, tmp_path: Path
) -> None:
    """The tables are written by a process beside the server, at a lower CPU priority; kill -9
    of that process loses nothing: the server starts another, which applies from the committed
    offsets, and /readyz says which applier runs."""
    import httpx

    server = serve(CDRHUB_JOURNAL="true")
    url = f"{server.url}/cc/callback"
    for number in range(3):
        answer = httpx.post(url, json={"callId": f"first-{number}"}, headers={"token": TOKEN})
        assert answer.json()["result"] == "accepted"
    _wait_for(lambda: store.count_calls() == 3)
    assert httpx.get(f"{server.url}/readyz").json()["checks"]["journal"]["applier"] == "process"
    first = _applier_of(server.process.pid)
    assert first is not None
    # Answering pushes comes first: every thread of the applier runs at a lower priority.
    server_nice = _niceness(server.process.pid)
    assert server_nice and _niceness(first) == {min(n + 10, 19) for n in server_nice}
    # And on Linux below every ordinary task: a core is the applier's only when it is idle.
    threads = [int(task.name) for task in Path(f"/proc/{first}/task").iterdir()]
    assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_IDLE}
    assert os.sched_getscheduler(server.process.pid) == os.SCHED_OTHER
    os.kill(first, 9)
    for number in range(3):
        answer = httpx.post(url, json={"callId": f"after-{number}"}, headers={"token": TOKEN})
        assert answer.json()["result"] == "accepted"  # the server answers meanwhile
    _wait_for(lambda: store.count_calls() == 6)
    second = _applier_of(server.process.pid)
    assert second is not None and second != first
    assert store.get_call("first-0")["delivery_count"] == 1  # nothing applied twice
    server.stop()
    assert _applier_of(server.process.pid) is None
    assert "journal applier process ended" in server.log.read_text()
