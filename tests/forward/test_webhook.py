"""Webhooks and relays against a real HTTP receiver; signatures checked by `standardwebhooks`.

The app runs with its lifespan (so the deliverer runs inside it, as in `serve`), pushes go
through the real push endpoint, and what arrives is what a consumer would see.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from cdrhub.app import create_app
from cdrhub.forward import destinations, history
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers.forwarding import push_call
from tests.helpers.receiver import Receiver, receiving

CALL = {"callId": "fw-1", "startTime": 1764000000000, "direction": 0, "agentName": "张三"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Forwarding settings with a retry schedule a test can wait out."""
    return settings.model_copy(update={"forward_retry_schedule": "50ms,100ms"})



def test_created_and_updated_arrive_signed_in_order(
    fast: Settings, store: Store, receiver: Receiver
) -> None:
    """A new call, its duplicate and its correction: two events, in order, each verifiable
    with the published Standard Webhooks library, carrying the call and NXCC's exact bytes."""
    _, secret = destinations.add(store, "crm", receiver.url)
    assert secret is not None and secret.startswith("whsec_")
    first = json.dumps(CALL, ensure_ascii=False).encode()
    corrected = json.dumps({**CALL, "callDuration": 9}, ensure_ascii=False).encode()
    with TestClient(create_app(fast)) as client:
        assert push_call(client, first) == "created"
        assert push_call(client, first) == "duplicate"
        assert push_call(client, corrected) == "updated"
        got = receiver.wait_for(2)
        time.sleep(0.5)  # a duplicate would have arrived by now
    assert len(receiver.ok()) == 2
    verifier = Webhook(secret)
    events = [verifier.verify(r.body, r.headers) for r in got]
    assert [e["type"] for e in events] == ["call.created", "call.updated"]
    assert [r.headers["webhook-id"] for r in got] == [e["id"] for e in events]
    assert events[0]["id"] != events[1]["id"]
    assert events[0]["data"]["raw"].encode() == first
    assert events[1]["data"]["raw"].encode() == corrected
    assert events[0]["data"]["call"]["call_id"] == "fw-1"
    assert events[0]["data"]["call"]["agent_name"] == "张三"
    assert events[1]["data"]["call"]["call_duration"] == 9
    with pytest.raises(Exception):  # noqa: B017 - any verification failure will do
        Webhook(destinations.new_secret()).verify(got[0].body, got[0].headers)


def test_a_failing_receiver_is_retried_with_the_same_id_then_dead_lettered(
    fast: Settings, store: Store, receiver: Receiver
) -> None:
    """503 twice then 200: one event id on all three tries. Always 500: dead after the
    schedule, and `retry` sends it again with the same id."""
    receiver.answer = lambda n, body: (503, {}) if n < 2 else (200, {})
    destinations.add(store, "crm", receiver.url)
    with TestClient(create_app(fast)) as client:
        push_call(client, CALL)
        [delivered] = receiver.wait_for(1)
        ids = {r.headers["webhook-id"] for r in receiver.requests}
        assert len(receiver.requests) == 3 and ids == {delivered.headers["webhook-id"]}
        receiver.answer = lambda n, body: (500, {})
        push_call(client, {**CALL, "callId": "fw-2"})
        deadline = time.monotonic() + 10
        crm = destinations.require(store, "crm")
        while not history.dead_letters(store, crm) and time.monotonic() < deadline:
            time.sleep(0.05)
        [dead] = history.dead_letters(store, crm)
        assert dead["call_id"] == "fw-2" and dead["attempts"] == 3 and dead["last_status"] == 500
        assert dead["last_response"] == "ok"  # what the receiver answered, kept with the letter
        failed = history.attempts(store, crm, failed_only=True)
        assert [a["status"] for a in failed if a["event_id"] == dead["event_id"]] == [500] * 3
        receiver.answer = lambda n, body: (200, {})
        assert history.retry_dead(store, crm) == 1
        got = receiver.wait_for(2)
    assert got[-1].headers["webhook-id"] == dead["event_id"]


def test_a_newer_version_waits_behind_an_older_one_that_fails(
    fast: Settings, store: Store, receiver: Receiver
) -> None:
    """v1 fails twice; v2 of the same call is stored meanwhile, and another call too. The
    other call is not held up; v2 arrives only after v1."""

    def answer(n: int, body: bytes) -> tuple[int, dict[str, str]]:
        # v1 fails until the other call has arrived: proof that it was not held up.
        other_arrived = any(b'"call_id":"other"' in r.body for r in receiver.requests)
        return (503, {}) if b'"call_id":"fw-1"' in body and not other_arrived else (200, {})

    receiver.answer = answer
    destinations.add(store, "crm", receiver.url, concurrency=4)
    with TestClient(create_app(fast)) as client:
        push_call(client, CALL)
        push_call(client, {**CALL, "callDuration": 5})
        push_call(client, {**CALL, "callId": "other"})
        got = receiver.wait_for(3)
    order = [
        (json.loads(r.body)["data"]["call"]["call_id"], json.loads(r.body)["type"]) for r in got
    ]
    mine = [t for c, t in order if c == "fw-1"]
    assert mine == ["call.created", "call.updated"]
    assert order.index(("other", "call.created")) < order.index(("fw-1", "call.created"))


def test_410_pauses_the_destination(fast: Settings, store: Store, receiver: Receiver) -> None:
    receiver.answer = lambda n, body: (410, {})
    destinations.add(store, "crm", receiver.url)
    with TestClient(create_app(fast)) as client:
        push_call(client, CALL)
        deadline = time.monotonic() + 10
        while destinations.require(store, "crm").state != "paused" and time.monotonic() < deadline:
            time.sleep(0.05)
    crm = destinations.require(store, "crm")
    assert crm.state == "paused" and "410" in (crm.paused_reason or "")


def test_relay_sends_nxccs_bytes_and_token(
    fast: Settings, store: Store, receiver: Receiver
) -> None:
    """`--format nxcc`: the receiver behind cdrhub gets exactly what NXCC sent, as NXCC sends."""
    body = b'{"callId":"relay-1",  "startTime":1764000000000, "agentName":"\\u674e"}'
    destinations.add(store, "legacy", receiver.url, fmt="nxcc", token="their-token")
    with TestClient(create_app(fast)) as client:
        push_call(client, body)
        [got] = receiver.wait_for(1)
    assert got.body == body
    assert got.headers["token"] == "their-token"
    assert "webhook-signature" not in got.headers


def test_filter_and_event_types_choose_what_is_sent(
    fast: Settings, store: Store, receiver: Receiver
) -> None:
    destinations.add(
        store, "missed", receiver.url, call_filter="answered=no", event_types="call.created"
    )
    with TestClient(create_app(fast)) as client:
        push_call(client, {**CALL, "callId": "a", "answered": True})
        push_call(client, {**CALL, "callId": "b", "answered": False})
        push_call(client, {**CALL, "callId": "b", "answered": False, "callDuration": 3})
        push_call(client, {**CALL, "callId": "c"})
        got = receiver.wait_for(2)
        time.sleep(0.5)
    assert sorted(json.loads(r.body)["data"]["call"]["call_id"] for r in receiver.ok()) == [
        "b",
        "c",
    ]
    assert {json.loads(r.body)["type"] for r in got} == {"call.created"}
