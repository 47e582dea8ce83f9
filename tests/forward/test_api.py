"""The forwarding API (/api/destinations) through the real app, its deliverer and a real
HTTP receiver, on SQLite and PostgreSQL: admin keys only, the JSON error shape with the field
at fault, secrets never answered (but a generated one, once), and attempts, dead letters,
retry, pause, replay and secret rotation doing what they say.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from cdrhub.app import create_app
from cdrhub.auth.apikeys import create_key
from cdrhub.forward import destinations
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import TOKEN
from tests.helpers.forwarding import until
from tests.helpers.receiver import Receiver, receiving

CALL = {"callId": "api-1", "startTime": 1764000000000, "direction": 0, "agentName": "张三"}
ROUTES = [
    ("GET", "/api/destinations"),
    ("POST", "/api/destinations"),
    ("GET", "/api/destinations/{name}"),
    ("DELETE", "/api/destinations/{name}"),
    ("POST", "/api/destinations/{name}/pause"),
    ("POST", "/api/destinations/{name}/resume"),
    ("POST", "/api/destinations/{name}/rotate-secret"),
    ("GET", "/api/destinations/{name}/attempts"),
    ("GET", "/api/destinations/{name}/dead-letters"),
    ("POST", "/api/destinations/{name}/retry"),
    ("POST", "/api/destinations/{name}/replay"),
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """A retry schedule a test can wait out: three attempts, then dead."""
    return settings.model_copy(update={"forward_retry_schedule": "50ms,100ms"})


class Admin:
    """The app with its deliverer, and requests signed with an admin API key."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def __call__(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        content = None if body is None else json.dumps(body).encode()
        return self.client.request(
            method, path, content=content, params=params or None, headers=self.headers
        )

    def ok(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        answer = self(method, path, body, **params)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def push(self, body: dict[str, Any]) -> None:
        answer = self.client.post("/cc/callback", json=body, headers={"token": TOKEN})
        assert answer.status_code == 200, answer.text


@pytest.fixture
def admin(fast: Settings, store: Store) -> Iterator[Admin]:
    with TestClient(create_app(fast)) as client:
        yield Admin(client, create_key(store, "admin")[1])



def test_only_keys_with_the_write_right_open_it(admin: Admin, store: Store) -> None:
    """No key: 401; a read-only key: 403, before anything else is looked at; an admin key
    reaches every route (a 404 for a destination that does not exist)."""
    read_only = {"Authorization": f"Bearer {create_key(store, 'bi', read_only=True)[1]}"}
    for method, template in ROUTES:
        path = template.format(name="nope")
        assert admin.client.request(method, path).status_code == 401, path
        refused = admin.client.request(method, path, headers=read_only)
        assert refused.status_code == 403, path
        assert refused.json()["error"] == "forbidden"
        if "{name}" in template:
            missing = admin(method, path, {} if method == "POST" else None)
            assert missing.status_code == 404, (path, missing.text)
            assert missing.json()["error"] == "not_found"
    assert admin.ok("GET", "/api/destinations") == {"items": []}


def test_create_list_show_remove_and_no_secret_is_ever_answered(
    admin: Admin, receiver: Receiver
) -> None:
    created = admin("POST", "/api/destinations", {"name": "crm", "url": receiver.url})
    assert created.status_code == 201
    crm = created.json()
    generated = crm["generated_secret"]
    assert generated.startswith("whsec_") and crm["secret"] == "set"
    assert (crm["kind"], crm["state"], crm["events"]) == (
        "webhook",
        "active",
        ["call.created", "call.updated"],
    )
    assert (crm["waiting"], crm["dead"], crm["lag_seconds"]) == (0, 0, 0.0)
    given = destinations.new_secret()
    signed = admin.ok(
        "POST",
        "/api/destinations",
        {"name": "signed", "url": receiver.url, "secret": given, "events": ["call.created"],
         "filter": "direction=inbound answered=no", "concurrency": 3, "rate_per_second": 50,
         "timeout_seconds": 2.5, "from": "beginning"},
    )  # fmt: skip
    assert signed["generated_secret"] is None and signed["secret"] == "set"
    assert (signed["events"], signed["filter"], signed["concurrency"]) == (
        ["call.created"],
        "direction=inbound answered=no",
        3,
    )
    assert (signed["rate_per_second"], signed["timeout_seconds"]) == (50, 2.5)
    rabbit = admin.ok(
        "POST",
        "/api/destinations",
        {"name": "rabbit", "url": "amqp://guest:pw-s3cret@127.0.0.1:5672/?exchange=cdr"},
    )
    assert rabbit["url"] == "amqp://guest:***@127.0.0.1:5672/?exchange=cdr"
    relay = admin.ok(
        "POST",
        "/api/destinations",
        {"name": "legacy", "url": receiver.url, "format": "nxcc", "token": "relay-t0ken"},
    )
    assert (relay["kind"], relay["token"], relay["secret"]) == ("relay", "set", None)
    listed = admin("GET", "/api/destinations")
    assert [d["name"] for d in listed.json()["items"]] == ["crm", "legacy", "rabbit", "signed"]
    shown = admin.ok("GET", "/api/destinations/crm")
    assert shown == {k: v for k, v in crm.items() if k != "generated_secret"}
    assert shown["created_at"].endswith("+00:00") and shown["last_success_at"] is None
    texts = [listed.text] + [
        admin("GET", f"/api/destinations/{n}").text for n in ("crm", "signed", "rabbit", "legacy")
    ]
    for text in texts:
        for secret in (generated, given, "pw-s3cret", "relay-t0ken"):
            assert secret not in text
    assert admin.ok("DELETE", "/api/destinations/rabbit") == {"name": "rabbit", "removed": True}
    assert admin("GET", "/api/destinations/rabbit").status_code == 404
    assert admin("DELETE", "/api/destinations/rabbit").status_code == 404


def test_refusals_name_the_field_and_never_repeat_a_secret(
    admin: Admin, receiver: Receiver
) -> None:
    secret = destinations.new_secret()
    admin.ok("POST", "/api/destinations", {"name": "crm", "url": receiver.url})
    url = receiver.url
    cases: list[tuple[Any, int, str, Any, str]] = [
        # body, status, field, value answered, part of what is expected
        ({"name": "x", "url": "ftp://u:pw-1@h/x"}, 422, "url", "ftp://u:***@h/x", "scheme"),
        ({"name": "x", "url": "http://h:99999/x"}, 422, "url", "http://h:99999/x", "not a URL"),
        ({"name": "x", "url": "nats://127.0.0.1:4222"}, 422, "url", "nats://127.0.0.1:4222",
         "subject"),
        ({"name": "x", "url": url, "secret": "whsec_short"}, 422, "secret", "***", "base64"),
        ({"name": "x", "url": "nats://h/s", "secret": secret}, 422, "secret", "***", "webhooks"),
        ({"name": "x", "url": url, "format": "nxcc"}, 422, "token", None, "--token"),
        ({"name": "x", "url": url, "format": "json"}, 422, "format", "json", "standard or nxcc"),
        ({"name": "x", "url": url, "events": ["call.deleted"]}, 422, "events", ["call.deleted"],
         "unknown event type"),
        ({"name": "x", "url": url, "events": []}, 422, "events", [], "event types"),
        ({"name": "x", "url": url, "filter": "colour=red"}, 422, "filter", "colour=red",
         "unknown filter key"),
        ({"name": "x", "url": url, "concurrency": 0}, 422, "concurrency", 0, "between 1 and 256"),
        ({"name": "x", "url": url, "concurrency": "5"}, 422, "concurrency", "5", "whole number"),
        ({"name": "x", "url": url, "rate_per_second": -1}, 422, "rate_per_second", -1, "above 0"),
        ({"name": "x", "url": url, "timeout_seconds": 61}, 422, "timeout_seconds", 61, "60"),
        ({"name": "x", "url": url, "from": "yesterday"}, 422, "from", "yesterday", "ISO 8601"),
        ({"name": "two words", "url": url}, 422, "name", "two words", "one word"),
        ({"name": "x\u0000", "url": url}, 422, "name", "x\u0000", "control characters"),
        ({"url": url}, 422, "name", None, "required"),
        ({"name": "x", "url": url, "secert": secret}, 422, "secert", None, "one of name, url"),
        ({"name": "crm", "url": url}, 409, "name", "crm", "no other destination"),
        (b"{not json", 400, "body", None, "a JSON object"),
        ([{"name": "x"}], 400, "body", "list", "a JSON object"),
    ]  # fmt: skip
    for body, status, field, value, expected in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = admin.client.post("/api/destinations", content=content, headers=admin.headers)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()
        assert set(error) == {"error", "detail", "fields"}
        assert (
            error["error"] == {400: "bad_json", 409: "conflict", 422: "invalid_parameters"}[status]
        )
        [problem] = error["fields"]
        assert (problem["field"], problem["value"]) == (field, value), body
        assert expected in problem["expected"], (body, problem)
        assert secret not in answer.text and "pw-1" not in answer.text
    assert [d["name"] for d in admin.ok("GET", "/api/destinations")["items"]] == ["crm"]
    for params, field in (({"limit": "0"}, "limit"), ({"failed": "maybe"}, "failed"),
                          ({"since": "1"}, "since")):  # fmt: skip
        answer = admin("GET", "/api/destinations/crm/attempts", **params)
        assert answer.status_code == 422 and answer.json()["fields"][0]["field"] == field


def test_failures_dead_letters_retry_and_replay(admin: Admin, receiver: Receiver) -> None:
    """Always 500 (with a body): three attempts, then a dead letter, all visible; retry sends
    it again with the same id; replay by period sends it once more, again the same id."""
    receiver.answer = lambda n, body: (500, {})
    receiver.body = b"<b>down for maintenance</b>"
    admin.ok("POST", "/api/destinations", {"name": "crm", "url": receiver.url})
    before = int(time.time() * 1000)
    admin.push(CALL)
    dead = until(lambda: admin.ok("GET", "/api/destinations/crm/dead-letters")["items"])
    [letter] = dead
    assert (letter["call_id"], letter["type"], letter["attempts"], letter["last_status"]) == (
        "api-1",
        "call.created",
        3,
        500,
    )
    assert letter["last_error"] == "HTTP 500" and letter["updated_at"] is not None
    failed = admin.ok("GET", "/api/destinations/crm/attempts", failed="true")["items"]
    assert [(a["status"], a["ok"], a["event_id"]) for a in failed] == [
        (500, False, letter["event_id"])
    ] * 3
    assert failed[0]["response"] == "<b>down for maintenance</b>"
    assert failed[0]["at_ms"] >= before and failed[0]["latency_ms"] > 0
    assert len(admin.ok("GET", "/api/destinations/crm/attempts", limit="2")["items"]) == 2
    crm = admin.ok("GET", "/api/destinations/crm")
    assert (crm["dead"], crm["waiting"], crm["last_error"], crm["last_success_at_ms"]) == (
        1,
        0,
        "HTTP 500",
        None,
    )
    assert crm["last_error_at_ms"] >= before
    [listed] = admin.ok("GET", "/api/destinations")["items"]
    assert (listed["dead"], listed["last_error"]) == (1, "HTTP 500")

    receiver.answer = lambda n, body: (200, {})
    assert admin.ok("POST", "/api/destinations/crm/retry") == {"queued": 1}
    [delivered] = receiver.wait_for(1)
    assert delivered.headers["webhook-id"] == letter["event_id"]
    crm = until(lambda: (d := admin.ok("GET", "/api/destinations/crm"))["last_success_at"] and d)
    assert (crm["dead"], crm["waiting"]) == (0, 0) and crm["last_success_at_ms"] >= before
    assert admin.ok("GET", "/api/destinations/crm/dead-letters") == {"items": []}
    assert admin.ok("POST", "/api/destinations/crm/retry") == {"queued": 0}

    after = int(time.time() * 1000) + 1
    assert admin.ok(
        "POST", "/api/destinations/crm/replay", {"from": str(before), "to": after,
                                                 "filter": "direction=outbound"}
    ) == {"queued": 0}  # fmt: skip
    assert admin.ok("POST", "/api/destinations/crm/replay", {"from": str(before), "to": after}) == {
        "queued": 1
    }
    again = receiver.wait_for(2)
    assert again[-1].headers["webhook-id"] == letter["event_id"]
    for body, field in (
        ({"from": str(after), "to": str(before)}, "to"),
        ({"filter": "colour=red"}, "filter"),
        ({"events": ["call.deleted"]}, "events"),
        ({"from": "soon"}, "from"),
    ):
        answer = admin("POST", "/api/destinations/crm/replay", body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["fields"][0]["field"] == field


def test_pause_holds_events_and_resume_sends_them(admin: Admin, receiver: Receiver) -> None:
    admin.ok("POST", "/api/destinations", {"name": "crm", "url": receiver.url})
    paused = admin.ok("POST", "/api/destinations/crm/pause")
    assert (paused["state"], paused["paused_reason"]) == ("paused", "paused by an operator")
    admin.push(CALL)
    time.sleep(1.0)
    assert receiver.requests == []
    held = admin.ok("GET", "/api/destinations/crm")
    assert held["waiting"] == 1 and held["lag_seconds"] >= 1.0
    resumed = admin.ok("POST", "/api/destinations/crm/resume")
    assert (resumed["state"], resumed["paused_reason"]) == ("active", None)
    [got] = receiver.wait_for(1)
    assert json.loads(got.body)["data"]["call"]["call_id"] == "api-1"
    done = until(lambda: (d := admin.ok("GET", "/api/destinations/crm"))["waiting"] == 0 and d)
    assert done["lag_seconds"] == 0.0


def test_rotate_secret_signs_with_both_and_answers_only_a_generated_one(
    admin: Admin, receiver: Receiver
) -> None:
    old = admin.ok("POST", "/api/destinations", {"name": "crm", "url": receiver.url})[
        "generated_secret"
    ]
    rotated = admin("POST", "/api/destinations/crm/rotate-secret", {"grace_seconds": 600})
    assert rotated.status_code == 200
    new = rotated.json()["generated_secret"]
    assert new.startswith("whsec_") and new != old and old not in rotated.text
    assert rotated.json()["previous_secret"] == "set"
    admin.push(CALL)
    [got] = receiver.wait_for(1)
    for secret in (old, new):  # either is enough for a consumer during the grace period
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "call.created"
    mine = destinations.new_secret()
    chosen = admin("POST", "/api/destinations/crm/rotate-secret", {"secret": mine})
    assert chosen.status_code == 200 and chosen.json()["generated_secret"] is None
    assert mine not in chosen.text and new not in chosen.text
    admin.ok("POST", "/api/destinations", {"name": "stream", "url": "nats://127.0.0.1/s"})
    for path, body, status, field in (
        ("crm", {"secret": "whsec_x"}, 422, "secret"),
        ("crm", {"grace_seconds": -1}, 422, "grace_seconds"),
        ("crm", {"grace_seconds": "1h"}, 422, "grace_seconds"),
        ("stream", {}, 409, None),
    ):
        answer = admin("POST", f"/api/destinations/{path}/rotate-secret", body)
        assert answer.status_code == status, answer.text
        if field:
            assert answer.json()["fields"][0]["field"] == field
        assert "whsec_x" not in answer.text
