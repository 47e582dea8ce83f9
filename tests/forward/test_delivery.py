"""Delivery's promises beyond one webhook: two deliverers on one database, a hanging
destination that leaves ingest alone, auto-pause, networks, pruning, every way in makes events,
and the small languages (filters, the retry schedule)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from cdrhub.app import create_app
from cdrhub.cli import main
from cdrhub.forward import Deliverer, destinations, filters, history, schedule
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import events
from tests.helpers.cli import db_env, run
from tests.helpers.forwarding import push_call, until
from tests.helpers.receiver import Receiver, receiving

CALL = {"callId": "d-1", "startTime": 1764000000000, "direction": 0}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


def _push(client: TestClient, body: dict) -> float:
    """Push through the real endpoint; how long the answer took."""
    started = time.perf_counter()
    push_call(client, body)
    return time.perf_counter() - started



def test_two_deliverers_on_one_database_send_each_event_once(
    settings: Settings, store: Store, receiver: Receiver
) -> None:
    """Two processes' deliverers (two owners, two store handles): the lease lets one of them
    deliver the destination, so 40 events arrive 40 times, each id once."""
    off = settings.model_copy(update={"forward": False})
    destinations.add(store, "crm", receiver.url, start="beginning")
    with TestClient(create_app(off)) as client:
        for i in range(40):
            _push(client, {**CALL, "callId": f"two-{i}"})

    async def both() -> None:
        from cdrhub.store import open_store

        handles = [open_store(settings.database_url) for _ in range(2)]
        stop = asyncio.Event()
        runs = [
            asyncio.create_task(Deliverer(h, settings, owner=f"proc-{n}").run(stop))
            for n, h in enumerate(handles)
        ]
        deadline = time.monotonic() + 20
        while len(receiver.ok()) < 40 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)  # time for a second delivery, if there were one
        stop.set()
        await asyncio.gather(*runs)
        for handle in handles:
            handle.close()

    asyncio.run(both())
    ids = [r.headers["webhook-id"] for r in receiver.ok()]
    assert len(ids) == 40 and len(set(ids)) == 40


def test_a_hanging_destination_leaves_ingest_alone(
    settings: Settings, store: Store, receiver: Receiver
) -> None:
    """The receiver holds every request 3 s (timeout 0.5 s): pushes are still answered at once."""
    receiver.hang_seconds = 3.0
    destinations.add(store, "slow", receiver.url, timeout_seconds=0.5, concurrency=2)
    with TestClient(create_app(settings)) as client:
        _push(client, CALL)
        until(lambda: receiver.requests)
        took = [_push(client, {**CALL, "callId": f"h-{i}"}) for i in range(20)]
        assert client.get("/readyz").json()["status"] == "ready"
        slow = destinations.require(store, "slow")
        failed = until(lambda: history.attempts(store, slow, failed_only=True))
    assert max(took) < 1.0, took
    assert "no answer within 0.5 s" in failed[0]["error"]


def test_a_destination_failing_long_enough_is_paused(
    settings: Settings, store: Store, receiver: Receiver
) -> None:
    receiver.answer = lambda n, body: (503, {})
    fast = settings.model_copy(
        update={
            "forward_retry_schedule": "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
            "forward_auto_pause_hours": 0.0001,
        }  # 0.36 s
    )
    destinations.add(store, "down", receiver.url)
    with TestClient(create_app(fast)) as client:
        _push(client, CALL)
        paused = until(lambda: (d := destinations.require(store, "down")).state == "paused" and d)
    assert "every attempt failed" in paused.paused_reason and "503" in paused.paused_reason


def test_forward_networks_refuse_an_address_outside_them(
    settings: Settings, store: Store, receiver: Receiver
) -> None:
    fenced = settings.model_copy(update={"forward_networks": ["10.0.0.0/8"]})
    destinations.add(store, "crm", receiver.url)
    with TestClient(create_app(fenced)) as client:
        _push(client, CALL)
        crm = destinations.require(store, "crm")
        [attempt] = until(lambda: history.attempts(store, crm))[:1]
    assert not receiver.requests
    assert "outside CDRHUB_FORWARD_NETWORKS" in attempt["error"]


def test_imports_make_the_same_events_as_pushes(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    """A file import stores calls through the same transaction: one event per new call, one
    per changed call, none for an unchanged one."""
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(json.dumps({**CALL, "callId": f"imp-{i}"}) for i in range(3)))
    env = db_env(settings)
    assert run("import", str(path), env=env).exit_code == 0
    path.write_text(
        json.dumps({**CALL, "callId": "imp-0", "callDuration": 4})
        + "\n"
        + json.dumps({**CALL, "callId": "imp-1"})
    )
    assert run("import", str(path), env=env).exit_code == 0
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(events.c.type, events.c.call_id).order_by(events.c.seq)).all()
    assert [tuple(r) for r in rows] == [
        ("call.created", "imp-0"),
        ("call.created", "imp-1"),
        ("call.created", "imp-2"),
        ("call.updated", "imp-0"),
    ]


def test_prune_keeps_what_a_destination_still_owes(settings: Settings, store: Store) -> None:
    with TestClient(create_app(settings.model_copy(update={"forward": False}))) as client:
        for i in range(5):
            _push(client, {**CALL, "callId": f"p-{i}"})
    destinations.add(store, "late", "http://127.0.0.1:9/hook", start="beginning")
    with store.writing() as conn:  # every event is 30 days old
        conn.execute(update(events).values(created_at_ms=events.c.created_at_ms - 30 * 86_400_000))
    removed = history.prune(store, keep_days=7, attempts_keep_days=14)
    assert removed["events"] == 0  # "late" has not had its turn at any of them
    destinations.remove(store, "late")
    assert history.prune(store, keep_days=7, attempts_keep_days=14)["events"] == 5
    with store.read_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_the_filter_language() -> None:
    inbound_missed = filters.parse("direction=inbound answered=no")
    assert inbound_missed.matches({"direction": 0, "answered": False})
    assert not inbound_missed.matches({"direction": 0, "answered": True})
    assert not inbound_missed.matches({"direction": 1, "answered": False})
    talk = filters.parse("min_talk=30s")
    base = {"answered": True, "answer_time_ms": 1_000}
    assert talk.matches({**base, "end_time_ms": 31_000})
    assert not talk.matches({**base, "end_time_ms": 30_999})
    assert filters.parse("agent=ann agent=bob").matches({"agent_nick_name": "bob"})
    for bad in ("direction=sideways", "answered=maybe", "colour=red", "agent", "min_talk=soon"):
        with pytest.raises(filters.FilterError):
            filters.parse(bad)


def test_the_retry_schedule() -> None:
    steps = schedule.parse("5s,5m,2h")
    assert steps == (5.0, 300.0, 7200.0)
    for failures, step in enumerate(steps, start=1):
        wait = schedule.next_wait(steps, failures, None)
        assert wait is not None and step * 0.8 <= wait <= step * 1.2
    assert schedule.next_wait(steps, 4, None) is None  # dead after the last step
    assert schedule.next_wait(steps, 1, 120.0) == 120.0  # Retry-After asks for longer
    assert schedule.retry_after("120") == 120.0
    assert schedule.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert schedule.retry_after("soon") is None
    with pytest.raises(ValueError):
        schedule.parse("5 minutes")


def test_forward_commands_manage_a_destination(settings: Settings, receiver: Receiver) -> None:
    env = db_env(settings)
    added = run("forward", "add", "crm", receiver.url, env=env)
    assert added.exit_code == 0, added.output
    secret = added.output.strip().splitlines()[-1]
    assert secret.startswith("whsec_")
    shown = run("forward", "show", "crm", env=env)
    assert secret not in shown.output and json.loads(shown.output)["secret"] == "set"
    assert run("forward", "pause", "crm", env=env).output.strip() == "crm is paused."
    assert "paused" in run("forward", "list", env=env).output
    assert run("forward", "resume", "crm", env=env).output.strip() == "crm is active."
    rotated = run("forward", "rotate-secret", "crm", env=env)
    assert rotated.exit_code == 0 and secret not in rotated.output
    bad = run("forward", "add", "x", "ftp://host/", env=env)
    assert bad.exit_code == 1 and "unsupported URL scheme 'ftp'" in bad.output
    again = run("forward", "add", "crm", receiver.url, env=env)
    assert again.exit_code == 1 and "exists" in again.output
    assert run("forward", "remove", "crm", env=env).exit_code == 0
    assert "no destination named 'crm'" in run("forward", "show", "crm", env=env).output
    assert main is not None


def test_a_stored_body_todays_parser_refuses_is_still_forwarded(
    settings: Settings, store: Store, receiver: Receiver
) -> None:
    """A version stored before a rule existed (here: a 1970 start, refused since issue 12)
    goes out with its raw body and ``call`` null, instead of stopping the destination."""
    from cdrhub.store.schema import raw_pushes

    with TestClient(create_app(settings.model_copy(update={"forward": False}))) as client:
        _push(client, CALL)
        _push(client, {**CALL, "callId": "fine"})
    old = json.dumps({**CALL, "startTime": 1000}).encode()
    with store.writing() as conn:
        conn.execute(update(raw_pushes).where(raw_pushes.c.call_id == "d-1").values(body=old))
    destinations.add(store, "crm", receiver.url, start="beginning", call_filter="direction=inbound")
    with TestClient(create_app(settings)) as client:
        got = receiver.wait_for(2)
    bodies = {json.loads(r.body)["data"]["raw"]: json.loads(r.body)["data"]["call"] for r in got}
    assert bodies[old.decode()] is None
    assert [c["call_id"] for c in bodies.values() if c] == ["fine"]
