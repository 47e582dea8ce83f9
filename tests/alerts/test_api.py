"""``/api/alerts`` through the real app: admin keys only, errors that say what fits, targets
masked, and the same rules the CLI and the evaluator see."""

from __future__ import annotations

from fastapi.testclient import TestClient

from cdrhub.alerts import rules
from cdrhub.auth.apikeys import create_key
from cdrhub.store import Store
from tests.helpers.receiver import receiving

SECRET = "abcdefghijklmnopqrstuvwxyz012345"


def test_rules_over_the_api(client: TestClient, store: Store, api_key: str) -> None:
    admin = {"Authorization": f"Bearer {api_key}"}
    reader = {"Authorization": f"Bearer {create_key(store, 'ro', read_only=True)[1]}"}
    body = {
        "name": "low-sl",
        "condition": "service_level < 80%",
        "window": "30m",
        "min_calls": 20,
        "direction": "inbound",
        "notify": [f"dingtalk://{SECRET}/"],
    }
    assert client.post("/api/alerts", json=body, headers=reader).status_code == 403
    assert client.get("/api/alerts").status_code == 401
    created = client.post("/api/alerts", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["notify"] == ["dingtalk://***/"]
    assert SECRET not in created.text
    again = client.post("/api/alerts", json=body, headers=admin)
    assert again.status_code == 409
    assert again.json()["fields"][0]["field"] == "name"

    wrong = client.post(
        "/api/alerts", json={**body, "name": "x", "condition": "asa < 3s"}, headers=admin
    )
    assert wrong.status_code == 422
    problem = wrong.json()["fields"][0]
    assert problem["field"] == "condition" and problem["value"] == "asa < 3s"
    assert "asa > 30s" in problem["expected"]
    unknown = client.post("/api/alerts", json={**body, "colour": "red"}, headers=admin)
    assert unknown.status_code == 422 and unknown.json()["fields"][0]["field"] == "colour"

    listed = client.get("/api/alerts", headers=admin).json()["items"]
    assert [(r["name"], r["status"], r["direction"]) for r in listed] == [
        ("low-sl", "ok", "inbound")
    ]
    assert SECRET not in client.get("/api/alerts/low-sl", headers=admin).text
    assert client.post("/api/alerts/low-sl/pause", headers=admin).json()["status"] == "paused"
    assert client.post("/api/alerts/low-sl/resume", headers=admin).json()["status"] == "ok"
    assert client.get("/api/alerts/nobody", headers=admin).status_code == 404
    assert client.delete("/api/alerts/low-sl", headers=admin).status_code == 204
    assert rules.find(store, "low-sl") is None


def test_test_send_and_history(client: TestClient, store: Store, api_key: str) -> None:
    admin = {"Authorization": f"Bearer {api_key}"}
    with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        body = {
            "name": "silence",
            "condition": "no_pushes",
            "notify": [f"json://127.0.0.1:{port}/hook"],
        }
        assert client.post("/api/alerts", json=body, headers=admin).status_code == 201
        sent = client.post("/api/alerts/silence/test", headers=admin).json()["items"]
        assert [(s["delivered"], s["attempts"]) for s in sent] == [(True, 1)]
        assert receiver.wait_for(1)[0].json()["title"] == "[cdrhub] TEST: silence"
    history = client.get("/api/alerts/history", headers=admin).json()["items"]
    assert [(h["rule_name"], h["kind"], h["delivered"]) for h in history] == [
        ("silence", "test", True)
    ]


def test_metrics_show_each_rule(client: TestClient, store: Store) -> None:
    rules.add(store, "silence", "no_pushes", targets=["json://127.0.0.1:9/x"])
    rules.add(store, "quiet", "refused > 5", targets=["json://127.0.0.1:9/x"])
    rules.set_state(store, "quiet", "paused")
    text = client.get("/metrics").text
    assert 'cdrhub_alert_firing{rule="silence"} 0.0' in text
    assert 'cdrhub_alert_paused{rule="quiet"} 1.0' in text
