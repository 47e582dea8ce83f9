"""Forwarding to the real brokers: NATS JetStream, Redis Streams, RabbitMQ and MQTT.

As in test_webhook.py, the app runs with its lifespan (the deliverer inside it, as in
`serve`), pushes go through the real push endpoint, and a consumer of the test's own reads
what arrived. Every test has its own subject, stream, exchange, queue or topic (see
conftest.py, which also says how to point the tests at other servers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cdrhub.app import create_app
from cdrhub.forward import destinations, history
from cdrhub.settings import Settings
from cdrhub.store import Store
from cdrhub.store.schema import events
from tests.forward.conftest import (
    AmqpQueue,
    Message,
    MqttTopic,
    NatsStream,
    RedisStream,
    unique,
)
from tests.helpers.cli import db_env, run
from tests.helpers.forwarding import push_call
from tests.helpers.forwarding import until as wait_until
from tests.helpers.proxy import TcpProxy

CALL = {"callId": "br-1", "startTime": 1764000000000, "direction": 0, "agentName": "张三"}
KINDS = ["nats", "redis", "amqp", "mqtt"]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """A retry schedule a test can wait out."""
    return settings.model_copy(update={"forward_retry_schedule": "50ms,100ms"})


@pytest.fixture
def patient(settings: Settings) -> Settings:
    """Retries every ~200 ms for about ten seconds: a broker can come back before the end."""
    return settings.model_copy(update={"forward_retry_schedule": ",".join(["200ms"] * 50)})


@dataclass
class Broker:
    """A working destination URL of one kind, and how to read what reached it."""

    kind: str
    url: str
    messages: Callable[[], list[Message]]
    has_broker_id: bool = True


@dataclass
class DownBroker:
    """A destination URL that fails until ``fix()``; ``error`` is what the failure says."""

    url: str
    fix: Callable[[], None]
    messages: Callable[[], list[Message]]
    error: str
    refused: bool = True  # a closed port: each attempt fails at once, not at the timeout


def _port_url(url: str, port: int) -> str:
    parts = urlsplit(url)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@pytest.fixture(params=KINDS)
def broker(request: pytest.FixtureRequest) -> Broker:
    kind = request.param
    if kind == "nats":
        stream: NatsStream = request.getfixturevalue("nats_stream")
        stream.create()
        return Broker(kind, stream.url, stream.messages)
    if kind == "redis":
        redis_stream: RedisStream = request.getfixturevalue("redis_stream")
        return Broker(kind, redis_stream.url(), redis_stream.messages)
    if kind == "amqp":
        queue: AmqpQueue = request.getfixturevalue("amqp_queue")
        return Broker(kind, queue.url(), queue.messages)
    topic: MqttTopic = request.getfixturevalue("mqtt_topic")
    return Broker(kind, topic.url, topic.messages, has_broker_id=False)


@pytest.fixture
def proxies() -> Iterator[list[TcpProxy]]:
    made: list[TcpProxy] = []
    yield made
    for proxy in made:
        proxy.stop()


@pytest.fixture(params=["nats-no-stream", *KINDS])
def down_broker(request: pytest.FixtureRequest, proxies: list[TcpProxy]) -> DownBroker:
    """A subject no JetStream stream covers (fixed by creating one), or, for every kind, a
    closed local port (fixed by a proxy to the real broker starting to listen there)."""
    kind = request.param
    if kind == "nats-no-stream":
        stream: NatsStream = request.getfixturevalue("nats_stream")
        return DownBroker(
            stream.url, stream.create, stream.messages, "no JetStream stream", refused=False
        )
    if kind == "nats":
        stream = request.getfixturevalue("nats_stream")
        stream.create()
        url, messages = stream.url, stream.messages
    elif kind == "redis":
        redis_stream: RedisStream = request.getfixturevalue("redis_stream")
        url, messages = redis_stream.url(), redis_stream.messages
    elif kind == "amqp":
        queue: AmqpQueue = request.getfixturevalue("amqp_queue")
        url, messages = queue.url(), queue.messages
    else:
        topic: MqttTopic = request.getfixturevalue("mqtt_topic")
        url, messages = topic.url, topic.messages
    target = urlsplit(url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 0)
    proxies.append(proxy)
    return DownBroker(_port_url(url, proxy.port), proxy.start, messages, f"127.0.0.1:{proxy.port}")



def _stored_events(store: Store) -> list[tuple[str, str]]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(events.c.id, events.c.type).order_by(events.c.seq)).all()
    return [(r.id, r.type) for r in rows]


def _arrived(messages: Callable[[], list[Message]], count: int) -> list[Message]:
    got = wait_until(lambda: len(found := messages()) >= count and found, what=f"{count} messages")
    time.sleep(0.5)  # a duplicate would have arrived by now
    final = messages()
    assert len(final) == count, [m.event["id"] for m in final]
    assert final[: len(got)] == got
    return final


def test_created_duplicate_corrected_arrive_as_two_messages_in_order(
    fast: Settings, store: Store, broker: Broker
) -> None:
    """A new call, its duplicate and its correction: exactly two messages, created then
    updated, each with its event id (in the broker's own id field where it has one)."""
    destinations.add(store, "pipe", broker.url)
    first = json.dumps(CALL, ensure_ascii=False).encode()
    corrected = json.dumps({**CALL, "callDuration": 9}, ensure_ascii=False).encode()
    with TestClient(create_app(fast)) as client:
        assert push_call(client, first) == "created"
        assert push_call(client, first) == "duplicate"
        assert push_call(client, corrected) == "updated"
        got = _arrived(broker.messages, 2)
    stored = _stored_events(store)
    assert [t for _, t in stored] == ["call.created", "call.updated"]
    assert [(m.event["id"], m.event["type"]) for m in got] == stored
    if broker.has_broker_id:
        assert [m.broker_id for m in got] == [i for i, _ in stored]
    assert got[0].event["data"]["raw"].encode() == first
    assert got[1].event["data"]["raw"].encode() == corrected
    assert got[0].event["data"]["call"]["agent_name"] == "张三"
    assert got[1].event["data"]["call"]["call_duration"] == 9
    pipe = destinations.require(store, "pipe")
    assert [a["ok"] for a in history.attempts(store, pipe)] == [True, True]
    assert history.status(store, pipe)["waiting"] == 0


def test_a_broker_that_is_down_fails_clearly_then_recovers(
    patient: Settings, store: Store, down_broker: DownBroker
) -> None:
    """Failed attempts that say what is wrong, the push path unaffected, and once the broker
    is there the waiting event arrives with the same id, followed by the next one."""
    destinations.add(store, "pipe", down_broker.url, timeout_seconds=2)
    with TestClient(create_app(patient)) as client:
        assert push_call(client, CALL) == "created"
        pipe = destinations.require(store, "pipe")
        failed = wait_until(
            lambda: len(f := history.attempts(store, pipe, failed_only=True)) >= 2 and f,
            what="two failed attempts",
        )
        for attempt in failed:
            assert down_broker.error in (attempt["error"] or ""), attempt["error"]
            if down_broker.refused:
                assert "refused" in attempt["error"].lower(), attempt["error"]
                assert attempt["latency_ms"] < 1000, "a refused connection is known at once"
        assert down_broker.error in (destinations.require(store, "pipe").last_error or "")
        assert push_call(client, {**CALL, "callDuration": 4}) == "updated"  # ingest goes on
        assert client.get("/readyz").status_code == 200
        down_broker.fix()
        got = _arrived(down_broker.messages, 2)
    stored = _stored_events(store)
    assert [(m.event["id"], m.event["type"]) for m in got] == stored
    assert {a["event_id"] for a in failed} == {stored[0][0]}
    pipe = destinations.require(store, "pipe")
    assert pipe.state == "active" and pipe.last_success_at_ms is not None
    assert history.dead_letters(store, pipe) == []


def test_rabbitmq_unroutable_message_is_a_failure(
    fast: Settings, store: Store, amqp_queue: AmqpQueue
) -> None:
    """Mandatory: a routing key no queue is bound with is returned, so it is not delivered."""
    destinations.add(store, "pipe", amqp_queue.url(routing_key="nobody-listens"))
    with TestClient(create_app(fast)) as client:
        push_call(client, CALL)
        pipe = destinations.require(store, "pipe")
        [dead] = wait_until(lambda: history.dead_letters(store, pipe), what="a dead letter")
    assert "NO_ROUTE" in dead["last_error"] and "nobody-listens" in dead["last_error"]
    assert not any(a["ok"] for a in history.attempts(store, pipe))
    assert amqp_queue.messages() == []


def test_redis_maxlen_trims_the_stream(
    fast: Settings, store: Store, redis_stream: RedisStream
) -> None:
    """``maxlen=N``: ``XADD ... MAXLEN ~ N`` keeps the stream near N entries (Redis trims
    whole nodes, so approximately: never below N, and far below what was added)."""
    destinations.add(store, "pipe", redis_stream.url(maxlen=10))
    with TestClient(create_app(fast)) as client:
        for n in range(300):
            push_call(client, {**CALL, "callId": f"trim-{n}"})
        wait_until(
            lambda: history.status(store, destinations.require(store, "pipe"))["waiting"] == 0,
            what="every event delivered",
        )
    assert 10 <= redis_stream.length() < 300
    assert redis_stream.messages()[-1].event["data"]["call"]["call_id"] == "trim-299"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_broker_passwords_never_show(
    fast: Settings,
    store: Store,
    amqp_queue: AmqpQueue,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A password-bearing AMQP URL that works, and two with a made-up password that fail
    (a wrong password on the real broker; a closed port): the passwords appear in no attempt,
    error, dead letter, `forward show`/`list`/`attempts`, /metrics or log line."""
    working = amqp_queue.url()
    password = urlsplit(working).password
    if not password:
        pytest.skip("CDRHUB_TEST_AMQP_URL has no password: use amqp://USER:PASS@HOST:5672/")
    made_up = "Made-Up:p@ss/w0rd"  # percent-encoded in the URL; the client sees it decoded
    encoded = "Made-Up%3Ap%40ss%2Fw0rd"
    user = urlsplit(working).username
    real = urlsplit(working)
    wrong = amqp_queue.url(server=f"amqp://{user}:{encoded}@{real.hostname}:{real.port or 5672}")
    closed = amqp_queue.url(server=f"amqp://{user}:{encoded}@127.0.0.1:{_free_port()}")
    caplog.set_level(logging.DEBUG)
    destinations.add(store, "good", working)
    destinations.add(store, "wrong", wrong)
    destinations.add(store, "closed", closed)
    with TestClient(create_app(fast)) as client:
        push_call(client, CALL)
        _arrived(amqp_queue.messages, 1)
        for name in ("wrong", "closed"):
            dest = destinations.require(store, name)
            wait_until(lambda d=dest: history.dead_letters(store, d), what=f"{name} dead")
        metrics = client.get("/metrics").text
    env = db_env(fast)
    shown = [run("forward", "show", name, env=env).output for name in ("good", "wrong", "closed")]
    listed = run("forward", "list", env=env).output
    tried = [run("forward", "attempts", n, env=env).output for n in ("good", "wrong", "closed")]
    records = []
    for name in ("good", "wrong", "closed"):
        dest = destinations.require(store, name)
        records += [json.dumps(dest.public(), default=str)]
        records += [json.dumps(history.attempts(store, dest), default=str)]
        records += [json.dumps(history.dead_letters(store, dest), default=str)]
        records += [json.dumps(history.forwarding_status(store), default=str)]
    logged = "\n".join(
        r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records
    )
    everything = "\n".join([*shown, listed, *tried, *records, metrics, logged])
    for secret in (made_up, encoded, "p@ss/w0rd", f":{password}@"):
        assert secret not in everything, secret
    assert f"{user}:***@" in shown[0] and f"{user}:***@" in shown[1]
    wrong_error = destinations.require(store, "wrong").last_error or ""
    assert "ACCESS_REFUSED" in wrong_error, wrong_error
    assert "refused" in (destinations.require(store, "closed").last_error or "").lower()
    assert any(r.name.startswith("aiormq") for r in caplog.records), "aio-pika logs were seen"


def test_masking_covers_every_spelling_of_a_broker_password() -> None:
    """A client gets the password percent-decoded from the URL (aiomqtt, aio-pika, redis-py
    all do), so an error quoting it must be masked in that spelling too, as in the URL's."""
    url = "mqtt://cdrhub:Made-Up%3Ap%40ss%2Fw0rd@127.0.0.1:1883/calls?token=t0ken-Value"
    dest, _ = _destination(url)
    for text in ("Made-Up:p@ss/w0rd", "Made-Up%3Ap%40ss%2Fw0rd", "t0ken-Value"):
        assert destinations.mask_text(f"refused login {text}!", dest) == "refused login ***!"
    assert destinations.masked_url(url) == ("mqtt://cdrhub:***@127.0.0.1:1883/calls?token=***")


def _destination(url: str) -> tuple[destinations.Destination, None]:
    values = dict.fromkeys(destinations.Destination.__dataclass_fields__)
    values |= {"url": url, "kind": "mqtt", "events": ()}
    return destinations.Destination(**values), None


def _sockets_to(port: int) -> int:
    """This process's established TCP connections to ``port`` (Linux: /proc)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                mine.add(link[len("socket:[") : -1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                remote_port, state, inode = int(fields[2].split(":")[1], 16), fields[3], fields[9]
                count += remote_port == port and state == "01" and inode in mine
    return count


def test_rabbitmq_missing_exchange_fails_without_leaking_connections(
    patient: Settings, store: Store, amqp_queue: AmqpQueue
) -> None:
    """An exchange that does not exist: each attempt says so, and the connection opened for
    it is closed again (not one more open connection to RabbitMQ per retry)."""
    if not os.path.exists("/proc/self/net/tcp"):
        pytest.skip("counting open connections needs Linux's /proc")
    port = urlsplit(amqp_queue.server).port or 5672
    missing = amqp_queue.url().replace(amqp_queue.exchange, unique("cdrhub-test-missing-"))
    destinations.add(store, "pipe", missing)
    with TestClient(create_app(patient)) as client:
        for n in range(4):
            push_call(client, {**CALL, "callId": f"leak-{n}"})
        pipe = destinations.require(store, "pipe")
        failed = wait_until(
            lambda: len(f := history.attempts(store, pipe, failed_only=True)) >= 12 and f,
            what="twelve failed attempts",
        )
        assert all("NOT_FOUND - no exchange" in a["error"] for a in failed), failed[0]["error"]
        assert _sockets_to(port) <= 1  # at most the attempt under way


def test_replay_resends_the_same_ids_and_jetstream_drops_the_repeats(
    fast: Settings, store: Store, nats_stream: NatsStream, redis_stream: RedisStream
) -> None:
    """Replay sends both events again with their ids. JetStream, given ``Nats-Msg-Id``,
    acknowledges the repeats but keeps one copy; a Redis stream holds both copies, which a
    consumer tells apart by the ``id`` field."""
    nats_stream.create()
    destinations.add(store, "nats", nats_stream.url)
    destinations.add(store, "redis", redis_stream.url())
    with TestClient(create_app(fast)) as client:
        push_call(client, CALL)
        push_call(client, {**CALL, "callDuration": 9})
        _arrived(nats_stream.messages, 2)
        _arrived(redis_stream.messages, 2)
        assert history.replay(store, "nats") == 2
        assert history.replay(store, "redis") == 2
        replayed = _arrived(redis_stream.messages, 4)
        nats = destinations.require(store, "nats")
        wait_until(lambda: len(history.attempts(store, nats)) == 4, what="four NATS attempts")
        time.sleep(0.3)
    stored = [i for i, _ in _stored_events(store)]
    assert [m.broker_id for m in replayed] == stored + stored
    assert all(a["ok"] for a in history.attempts(store, nats))
    assert [m.broker_id for m in nats_stream.messages()] == stored
