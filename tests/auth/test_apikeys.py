"""API keys guard the read API: created, listed and revoked by the CLI, checked on every request."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cdrhub.auth.apikeys import create_key, hash_key, list_keys
from cdrhub.cli import main
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import TOKEN, Push


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_cli_create_prints_the_key_alone_on_the_last_line(
    settings: Settings, client: TestClient, store: Store
) -> None:
    """`apikey create` ends with the bare key, which then opens the read API."""
    code, output = cli(settings, "apikey", "create", "crm", "--read-only")
    assert code == 0
    key = output.rstrip("\n").splitlines()[-1]
    assert key.startswith("cdrhub_") and " " not in key and len(key) > 40
    assert client.get("/api/calls", headers=bearer(key)).status_code == 200
    [stored] = list_keys(store)
    assert stored.name == "crm" and stored.read_only


def test_only_the_hash_is_stored(settings: Settings, store: Store) -> None:
    """The database holds the key's SHA-256, never the key."""
    _, secret = create_key(store, "bi")
    with store.read_engine.connect() as conn:
        dump = repr(conn.exec_driver_sql("SELECT * FROM api_keys").all())
    assert secret not in dump and hash_key(secret) in dump


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": f"Bearer {TOKEN}"},
        {"token": TOKEN},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
    ids=["none", "unknown", "ingest-token-as-bearer", "ingest-token-header", "basic"],
)
def test_read_endpoints_refuse_without_a_key(client: TestClient, headers: dict[str, str]) -> None:
    """No key, an unknown key or the ingest token is 401 with a Bearer challenge."""
    for path in ("/api/calls", "/api/calls/x", "/api/stats", "/api/export?format=csv"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert TOKEN not in response.text


def test_revoked_key_is_refused_at_once(
    settings: Settings, client: TestClient, store: Store
) -> None:
    """After `apikey revoke`, the very next request with the key is 401."""
    _, secret = create_key(store, "temp")
    assert client.get("/api/calls", headers=bearer(secret)).status_code == 200
    code, output = cli(settings, "apikey", "revoke", "temp")
    assert code == 0 and "revoked" in output
    assert client.get("/api/calls", headers=bearer(secret)).status_code == 401
    code, output = cli(settings, "apikey", "list", "--all")
    assert code == 0 and "temp" in output
    assert cli(settings, "apikey", "revoke", "temp")[0] == 1


def test_read_only_key_gets_403_on_write(client: TestClient, store: Store, push: Push) -> None:
    """A read-only key reads but cannot replay quarantine; a full key can."""
    _, read_only = create_key(store, "ro", read_only=True)
    _, full = create_key(store, "rw")
    response = client.post("/api/quarantine/1/replay", headers=bearer(read_only))
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert client.post("/api/quarantine/1/replay", headers=bearer(full)).status_code == 404
    assert push({"callId": "q", "direction": 7}).status_code == 422
    [entry] = store.quarantined()
    response = client.post(f"/api/quarantine/{entry['id']}/replay", headers=bearer(full))
    assert response.status_code == 200 and response.json()["stored"] is False


def test_list_shows_no_secret(settings: Settings, store: Store) -> None:
    """`apikey list` shows names and prefixes, not the keys."""
    _, secret = create_key(store, "dash")
    code, output = cli(settings, "apikey", "list")
    assert code == 0 and "dash" in output and secret not in output
