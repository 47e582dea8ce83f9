"""Fixtures for the broker tests: the real brokers, each with a stream/queue/topic of its own.

A broker's tests run when its variable names a server (the base URL; each test adds its own
subject, stream, exchange or topic with a unique name and removes it afterwards)::

    CDRHUB_TEST_NATS_URL=nats://127.0.0.1:4222          (JetStream enabled)
    CDRHUB_TEST_REDIS_URL=redis://127.0.0.1:6379/0
    CDRHUB_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/
    CDRHUB_TEST_MQTT_URL=mqtt://127.0.0.1:1883

Without it they skip, saying so, unless ``CDRHUB_TEST_REQUIRE_BROKERS=1`` (CI), where a skip
would hide a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

REQUIRE_BROKERS_ENV = "CDRHUB_TEST_REQUIRE_BROKERS"
BROKERS = {
    "nats": ("CDRHUB_TEST_NATS_URL", "nats://127.0.0.1:4222"),
    "redis": ("CDRHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "amqp": ("CDRHUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "mqtt": ("CDRHUB_TEST_MQTT_URL", "mqtt://127.0.0.1:1883"),
}


def broker_url(kind: str) -> str:
    """The test server of that kind, or a skip (a failure under CDRHUB_TEST_REQUIRE_BROKERS)."""
    env, example = BROKERS[kind]
    url = os.environ.get(env)
    if url:
        return url
    message = f"{kind} broker tests skipped: set {env}={example} to run them against a server"
    if os.environ.get(REQUIRE_BROKERS_ENV) == "1":
        pytest.fail(message.replace("skipped", "required"))
    pytest.skip(message)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"



@dataclass
class Message:
    """One message as a consumer got it: the event JSON and the broker's own id field."""

    event: dict[str, Any]
    broker_id: str | None


# -- NATS JetStream --------------------------------------------------------------------------


@dataclass
class NatsStream:
    """A subject of this test's own; ``create()`` makes a stream that covers it."""

    server: str
    subject: str = field(default_factory=lambda: unique("cdrhub.test."))
    stream: str = field(default_factory=lambda: unique("cdrhub_test_"))
    created: bool = False

    @property
    def url(self) -> str:
        return f"{self.server.rstrip('/')}/{self.subject}"

    async def _run(self, work: Callable[[Any, Any], Any]) -> Any:
        import nats

        client = await nats.connect(self.server, allow_reconnect=False, connect_timeout=5)
        try:
            return await work(client, client.jetstream())
        finally:
            await client.close()

    def create(self) -> None:
        async def work(client: Any, js: Any) -> None:
            await js.add_stream(name=self.stream, subjects=[self.subject])

        asyncio.run(self._run(work))
        self.created = True

    def delete(self) -> None:
        async def work(client: Any, js: Any) -> None:
            await js.delete_stream(self.stream)

        if self.created:
            asyncio.run(self._run(work))
            self.created = False

    def messages(self) -> list[Message]:
        async def work(client: Any, js: Any) -> list[Message]:
            info = await js.stream_info(self.stream)
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if not info.state.messages:
                    break
                msg = await js.get_msg(self.stream, seq)
                found.append(Message(json.loads(msg.data), (msg.headers or {}).get("Nats-Msg-Id")))
            return found

        return asyncio.run(self._run(work))


@pytest.fixture
def nats_stream() -> Iterator[NatsStream]:
    stream = NatsStream(broker_url("nats"))
    yield stream
    stream.delete()


# -- Redis Streams ---------------------------------------------------------------------------


@dataclass
class RedisStream:
    server: str
    key: str = field(default_factory=lambda: unique("cdrhub:test:"))

    def url(self, **query: Any) -> str:
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        return f"{self.server}?stream={self.key}{extra}"

    def _client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.server)

    def messages(self) -> list[Message]:
        with self._client() as client:
            entries = client.xrange(self.key)
        return [Message(json.loads(f[b"payload"]), f[b"id"].decode()) for _, f in entries]

    def length(self) -> int:
        with self._client() as client:
            return int(client.xlen(self.key))

    def delete(self) -> None:
        with self._client() as client:
            client.delete(self.key)


@pytest.fixture
def redis_stream() -> Iterator[RedisStream]:
    stream = RedisStream(broker_url("redis"))
    yield stream
    stream.delete()


# -- RabbitMQ --------------------------------------------------------------------------------


@dataclass
class AmqpQueue:
    """A direct exchange and a queue bound to it with ``routing_key``, both this test's own."""

    server: str
    exchange: str = field(default_factory=lambda: unique("cdrhub-test-"))
    queue: str = field(default_factory=lambda: unique("cdrhub-test-"))
    routing_key: str = "calls"
    received: list[Message] = field(default_factory=list)

    def url(self, routing_key: str | None = None, server: str | None = None) -> str:
        parts = urlsplit(server or self.server)
        key = self.routing_key if routing_key is None else routing_key
        query = f"exchange={self.exchange}&routing_key={key}"
        return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))

    async def _run(self, work: Callable[[Any], Any]) -> Any:
        import aio_pika

        connection = await aio_pika.connect(self.server, timeout=5)
        try:
            return await work(await connection.channel())
        finally:
            await connection.close()

    def declare(self) -> None:
        async def work(channel: Any) -> None:
            import aio_pika

            exchange = await channel.declare_exchange(self.exchange, aio_pika.ExchangeType.DIRECT)
            queue = await channel.declare_queue(self.queue, durable=False)
            await queue.bind(exchange, self.routing_key)

        asyncio.run(self._run(work))

    def messages(self) -> list[Message]:
        """Everything that reached the queue so far (taken off the queue and kept here)."""

        async def work(channel: Any) -> None:
            queue = await channel.get_queue(self.queue)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                self.received.append(Message(json.loads(message.body), message.message_id))
                assert message.delivery_mode == 2, "not persistent"

        asyncio.run(self._run(work))
        return list(self.received)

    def delete(self) -> None:
        async def work(channel: Any) -> None:
            await channel.queue_delete(self.queue)
            await channel.exchange_delete(self.exchange)

        asyncio.run(self._run(work))


@pytest.fixture
def amqp_queue() -> Iterator[AmqpQueue]:
    queue = AmqpQueue(broker_url("amqp"))
    queue.declare()
    yield queue
    queue.delete()


# -- MQTT ------------------------------------------------------------------------------------


@dataclass
class MqttTopic:
    """A topic of this test's own, with a subscriber of the test's own (paho, QoS 1)."""

    server: str
    topic: str = field(default_factory=lambda: unique("cdrhub/test/"))
    received: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"{self.server.rstrip('/')}/{self.topic}"

    def messages(self) -> list[Message]:
        with self.lock:
            return list(self.received)


@pytest.fixture
def mqtt_topic() -> Iterator[MqttTopic]:
    import paho.mqtt.client as mqtt

    topic = MqttTopic(broker_url("mqtt"))
    parts = urlsplit(topic.server)
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("cdrhub-test-"))
    if parts.username:
        client.username_pw_set(parts.username, parts.password)

    def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        c.subscribe(topic.topic, qos=1)

    def on_subscribe(c: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
        subscribed.set()

    def on_message(c: Any, userdata: Any, message: Any) -> None:
        with topic.lock:
            topic.received.append(Message(json.loads(message.payload), None))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        assert subscribed.wait(10), "the test's MQTT subscriber was not subscribed"
        yield topic
    finally:
        client.disconnect()
        client.loop_stop()
