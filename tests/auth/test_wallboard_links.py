"""Wallboard links: stored hashed, opened by their token alone, revocable from the CLI and the
admin API, refused at once when revoked, never echoed in an error; on both databases."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from cdrhub.alerts import Evaluator, rules
from cdrhub.auth import wallboard
from cdrhub.auth.apikeys import create_key
from cdrhub.cli import main
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import wall_links
from tests.helpers import Push
from tests.helpers.calls import call
from tests.helpers.receiver import receiving


def test_a_link_is_stored_as_its_hash_and_opens_until_revoked(store: Store) -> None:
    link, token = wallboard.create_link(store, " floor-tv ")
    assert link.name == "floor-tv" and token.startswith("cdrwall_") and len(token) > 40
    with store.read_engine.connect() as conn:
        stored = conn.execute(select(wall_links)).mappings().one()
    assert stored["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(dict(stored))
    assert wallboard.authenticate_link(store, token) == link
    for wrong in ("", token[:-1], token + "x", "cdrwall_", token.upper()):
        assert wallboard.authenticate_link(store, wrong) is None, wrong
    wallboard.revoke_link(store, "floor-tv")
    assert wallboard.authenticate_link(store, token) is None
    assert [k.name for k in wallboard.list_links(store, include_revoked=True)] == ["floor-tv"]
    assert wallboard.list_links(store) == []


def test_the_wall_data_needs_a_session_or_a_live_link(client: TestClient, store: Store) -> None:
    _, token = wallboard.create_link(store, "tv")
    assert client.get("/wall/data").status_code == 401
    ok = client.get("/wall/data", params={"link": token})
    assert ok.status_code == 200 and ok.headers["cache-control"] == "no-store"
    assert set(ok.json()) >= {"today", "last_hour", "alerts"} and ok.json()["alerts"] == []
    page = client.get("/wall", params={"link": token})
    assert page.status_code == 200 and f'data-url="/wall/data?link={token}"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    wallboard.revoke_link(store, "tv")
    refused = client.get("/wall/data", params={"link": token})
    assert refused.status_code == 403 and token not in refused.text
    assert (
        client.get("/wall", params={"link": token}, headers={"accept": "text/html"}).status_code
        == 403
    )
    assert client.get("/api/calls", params={"link": token}).status_code == 401  # nothing else


def test_cli_create_list_revoke(settings: Settings, store: Store) -> None:
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_DATA_DIR": str(settings.data_dir)}
    runner = CliRunner()
    made = runner.invoke(main, ["wall", "link", "create", "--name", "floor-tv"], env=env)
    assert made.exit_code == 0, made.output
    url = made.output.strip().splitlines()[-1]
    assert url.startswith("http://127.0.0.1:8080/wall?link=cdrwall_")
    token = url.split("link=")[1]
    assert wallboard.authenticate_link(store, token) is not None
    listed = runner.invoke(main, ["wall", "link", "list"], env=env)
    assert "floor-tv" in listed.output and token not in listed.output
    assert runner.invoke(main, ["wall", "link", "revoke", "floor-tv"], env=env).exit_code == 0
    assert wallboard.authenticate_link(store, token) is None
    again = runner.invoke(main, ["wall", "link", "revoke", "floor-tv"], env=env)
    assert again.exit_code == 1 and "cdrhub wall link list" in again.output


def test_admin_api_creates_lists_and_revokes(client: TestClient, store: Store) -> None:
    admin = {"Authorization": f"Bearer {create_key(store, 'admin')[1]}"}
    reader = {"Authorization": f"Bearer {create_key(store, 'ro', read_only=True)[1]}"}
    assert client.get("/api/wall-links", headers=reader).status_code == 403
    assert client.get("/api/wall-links").status_code == 401
    made = client.post("/api/wall-links", json={"name": "lobby"}, headers=admin)
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert made.json()["url"].endswith(f"/wall?link={token}")
    assert client.get("/wall/data", params={"link": token}).status_code == 200
    items = client.get("/api/wall-links", headers=admin).json()["items"]
    assert [i["name"] for i in items] == ["lobby"] and token not in str(items)
    empty = client.post("/api/wall-links", json={"name": " "}, headers=admin)
    assert empty.status_code == 422 and empty.json()["fields"][0]["field"] == "name"
    gone = client.delete(f"/api/wall-links/{items[0]['id']}", headers=admin)
    assert gone.status_code == 200 and gone.json()["revoked_at"]
    assert client.get("/wall/data", params={"link": token}).status_code == 403
    missing = client.delete("/api/wall-links/lobby", headers=admin)
    assert missing.status_code == 404 and missing.json()["fields"][0]["field"] == "which"


def test_the_wall_lists_the_alerts_firing_now(
    client: TestClient, store: Store, settings: Settings, push: Push
) -> None:
    """A rule the evaluator finds firing shows on the wallboard (data and page) with its figure;
    once paused it is gone, as it is from the header."""
    _, token = wallboard.create_link(store, "floor-tv")
    assert client.get("/wall/data", params={"link": token}).json()["alerts"] == []
    with receiving() as receiver:  # the rule's target: a real local json:// receiver
        port = receiver.url.split(":")[2].split("/")[0]
        target = f"json://127.0.0.1:{port}/alerts"
        rules.add(
            store, "low-sl", "service_level < 80%", window="30m", min_calls=4, targets=[target]
        )
        start = datetime.fromtimestamp(time.time() - 300, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for i in range(4):  # queued, answered 90 s after queueing: 0 % within 20 s
            body = call(
                f"slow-{i}", start, in_queue=1, answer=91, end=120, callType=1, answered=True
            )
            assert push(body).status_code == 200
        fired = Evaluator(store, settings).evaluate_once(time.time())
        assert [(t.rule, t.kind) for t in fired] == [("low-sl", "firing")]
        shown = client.get("/wall/data", params={"link": token}).json()["alerts"]
        assert [(a["name"], a["condition"], a["figure"]) for a in shown] == [
            ("low-sl", "service_level < 80%", "0%")
        ]
        assert shown[0]["message"] == "low-sl: service_level < 80% (0%)"
        page = client.get("/wall", params={"link": token})
        assert '<li class="alert">low-sl: service_level &lt; 80% (0%)</li>' in page.text
        rules.set_state(store, "low-sl", "paused")
        assert client.get("/wall/data", params={"link": token}).json()["alerts"] == []
