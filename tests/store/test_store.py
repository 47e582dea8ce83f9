"""The store's contract: batches behave as sequential commits; an unavailable database is 503."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdrhub import cdr
from cdrhub.app import create_app
from cdrhub.errors import StoreUnavailable
from cdrhub.settings import Settings
from cdrhub.store import Push, Rejected, Store, open_store
from tests.helpers import TOKEN, locked_sqlite


def _push(payload: dict[str, Any]) -> Push:
    body = cdr.msgspec.json.encode(payload)
    return Push(cdr.parse(body), body)


def test_a_batch_is_applied_in_order(store: Store) -> None:
    """Create, retry, correct and stale retry of one call in one commit: same as one by one."""
    first = {"callId": "b-1", "callDuration": 1}
    second = {"callId": "b-1", "callDuration": 2}
    results = store.write(
        [_push(first), _push(first), _push(second), _push(first), _push({"callId": "b-2"})]
    )
    assert results == ["created", "duplicate", "updated", "stale", "created"]
    row = store.get_call("b-1")
    assert row is not None
    assert row["call_duration"] == 2
    assert (row["delivery_count"], row["version_count"]) == (4, 2)
    versions = store.raw_versions("b-1")
    assert [v["delivery_count"] for v in versions] == [3, 1]


def test_quarantine_items_share_the_batch(store: Store) -> None:
    """A refused body and a valid push committed together each get their own result."""
    rejected = Rejected(body=b"{", status=400, reason="bad_json", detail={"error": "bad_json"})
    results = store.write([rejected, _push({"callId": "q-1"})])
    assert isinstance(results[0], int) and results[1] == "created"
    entry = store.quarantine_entry(int(results[0]))
    assert entry is not None and entry["body"] == b"{" and entry["reason"] == "bad_json"


def test_unreachable_postgres_is_store_unavailable() -> None:
    """A PostgreSQL that does not answer raises StoreUnavailable, with no SQL in the message."""
    pytest.importorskip("psycopg")
    store = open_store("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.write([_push({"callId": "x"})])
        assert "database unavailable" in caught.value.detail
        assert "INSERT" not in caught.value.detail
    finally:
        store.close()


def test_locked_sqlite_answers_503_then_recovers(tmp_path: Path) -> None:
    """While another process holds the write lock past the timeout: 503; once released: 200."""
    # No spool: this is about the database itself; tests/test_spool.py covers the spool.
    settings, blocker = locked_sqlite(tmp_path, busy_timeout_ms=200)
    with TestClient(create_app(settings)) as client:
        blocker.execute("BEGIN IMMEDIATE")
        try:
            refused = client.post(
                "/cc/callback",
                json={"callId": "l-1"},
                headers={"token": TOKEN},
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert refused.status_code == 503
        assert refused.json()["error"] == "store_unavailable"
        assert "locked" in refused.json()["detail"]
        accepted = client.post("/cc/callback", json={"callId": "l-1"}, headers={"token": TOKEN})
        assert accepted.status_code == 200 and accepted.json()["result"] == "created"


def test_concurrent_pushes_share_commits_and_all_land(client: TestClient, store: Store) -> None:
    """Many concurrent pushes (with duplicates) each get 200, and each call is stored once."""
    results: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(25):
            response = client.post(
                "/cc/callback",
                json={"callId": f"c-{i}", "caller": str(n)} if i % 5 else {"callId": f"c-{i}"},
                headers={"token": TOKEN},
            )
            with lock:
                results.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 200
    assert store.count_calls() == 25
    total = sum(store.get_call(f"c-{i}")["delivery_count"] for i in range(25))  # type: ignore[index]
    assert total == 200


@pytest.mark.postgres
def test_postgres_going_away_is_503_and_recovers_without_restart(
    postgres_database: str, tmp_path: Path
) -> None:
    """Pushes get 503 while PostgreSQL is unreachable and 200 again once it is back."""
    from sqlalchemy.engine import make_url

    from tests.helpers import empty_postgres
    from tests.helpers.proxy import TcpProxy

    empty_postgres(postgres_database)
    direct = open_store(postgres_database)
    direct.upgrade()
    target = make_url(postgres_database)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.start()
    proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = Settings(database_url=proxied, tokens=[TOKEN], data_dir=tmp_path, spool=False)
    headers = {"token": TOKEN}
    try:
        with TestClient(create_app(settings)) as client:
            assert (
                client.post("/cc/callback", json={"callId": "pg-1"}, headers=headers).status_code
                == 200
            )
            proxy.stop()
            down = client.post("/cc/callback", json={"callId": "pg-2"}, headers=headers)
            assert down.status_code == 503 and down.json()["error"] == "store_unavailable"
            assert client.get("/readyz").status_code == 503
            proxy.start()
            back = client.post("/cc/callback", json={"callId": "pg-2"}, headers=headers)
            assert back.status_code == 200 and back.json()["result"] == "created"
            assert client.get("/readyz").status_code == 200
    finally:
        proxy.stop()
    assert direct.count_calls() == 2
    direct.close()


@pytest.mark.postgres
def test_connections_dropped_while_idle_are_replaced_without_a_503(
    client: TestClient, settings: Settings
) -> None:
    """After the server drops idle connections (a restart), the next push still gets 200."""
    import psycopg

    headers = {"token": TOKEN}
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("terminating server connections is a PostgreSQL notion")
    assert (
        client.post("/cc/callback", json={"callId": "idle-1"}, headers=headers).status_code == 200
    )
    with psycopg.connect(settings.database_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    after = client.post("/cc/callback", json={"callId": "idle-2"}, headers=headers)
    assert after.status_code == 200, after.text
