"""Message-broker sinks: NATS JetStream, Redis Streams, RabbitMQ and MQTT.

Each keeps one connection per destination, opened at the first event and opened again after
a failure, and counts an event delivered only on the broker's own acknowledgement: the
JetStream ack, the ``XADD`` reply, the publisher confirm, the ``PUBACK``. Every message
carries the event id where the broker has a place for it (``Nats-Msg-Id``, so JetStream
drops a repeat inside its duplicate window; AMQP ``message_id``; a Redis field).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from cdrhub.forward.destinations import Destination, mask_text
from cdrhub.forward.events import Event, Renderer
from cdrhub.forward.sinks import AddressGuard, Result, Sink


class _BrokerSink:
    """Shared connection handling: connect lazily, drop the connection on any failure."""

    def __init__(self, destination: Destination, renderer: Renderer, guard: AddressGuard) -> None:
        self.destination = destination
        self.renderer = renderer
        self.guard = guard
        parts = urlsplit(destination.url)
        self.parts = parts
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.path = unquote(parts.path.lstrip("/"))
        self._connection: Any = None
        self._connecting = asyncio.Lock()

    async def _connect(self) -> Any:
        raise NotImplementedError

    async def _publish(self, connection: Any, event: Event, payload: bytes) -> None:
        raise NotImplementedError

    async def _disconnect(self, connection: Any) -> None:
        raise NotImplementedError

    async def send(self, event: Event) -> Result:
        refused = await self.guard.check(self.destination.url)
        if refused:
            return Result(False, error=refused)
        timeout = self.destination.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                async with self._connecting:
                    if self._connection is None:
                        self._connection = await self._connect()
                connection = self._connection
                await self._publish(connection, event, self.renderer.payload(event))
        except TimeoutError:
            await self._reset()
            return Result(False, error=f"no acknowledgement within {timeout:g} s")
        except Exception as exc:
            await self._reset()
            return Result(False, error=mask_text(self._describe(exc), self.destination))
        return Result(True)

    def _describe(self, exc: Exception) -> str:
        return f"{type(exc).__name__}: {exc}"

    async def _reset(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await self._disconnect(connection)
            except Exception:  # noqa: S110 - the connection is already broken; a new one follows
                pass

    async def close(self) -> None:
        await self._reset()


class NatsSink(_BrokerSink):
    """JetStream publish to the URL's subject; a stream must cover it (the operator's)."""

    async def _connect(self) -> Any:
        import nats

        server = urlunsplit((self.parts.scheme, self.parts.netloc, "", "", ""))
        client = await nats.connect(
            servers=[server],
            allow_reconnect=False,
            connect_timeout=self.destination.timeout_seconds,
        )
        return client, client.jetstream()

    async def _publish(self, connection: Any, event: Event, payload: bytes) -> None:
        _, jetstream = connection
        # publish_async and its ack future: the same JetStream ack as publish(), with less
        # work per message (one reply subscription, not a request each): 13,000 against
        # 6,000-7,000 messages/s here. send() bounds the wait with the destination's timeout.
        acked = await jetstream.publish_async(
            self.path,
            payload,
            headers={"Nats-Msg-Id": event.id, "Cdrhub-Event-Type": event.type},
        )
        await acked

    async def _disconnect(self, connection: Any) -> None:
        await connection[0].close()

    def _describe(self, exc: Exception) -> str:
        from nats.js.errors import NoStreamResponseError

        if isinstance(exc, NoStreamResponseError):
            return f"no JetStream stream covers subject {self.path!r}: create one that does"
        return super()._describe(exc)


class RedisSink(_BrokerSink):
    """``XADD`` to ``?stream=``, trimmed to about ``?maxlen=`` entries when given."""

    async def _connect(self) -> Any:
        import redis.asyncio as redis

        plain = urlunsplit((self.parts.scheme, self.parts.netloc, self.parts.path, "", ""))
        client = redis.from_url(plain, socket_timeout=self.destination.timeout_seconds)
        await client.ping()
        return client

    async def _publish(self, connection: Any, event: Event, payload: bytes) -> None:
        maxlen = int(self.query["maxlen"]) if self.query.get("maxlen") else None
        await connection.xadd(
            self.query["stream"],
            {"id": event.id, "type": event.type, "call_id": event.call_id, "payload": payload},
            maxlen=maxlen,
            approximate=True,
        )

    async def _disconnect(self, connection: Any) -> None:
        await connection.aclose()


class AmqpSink(_BrokerSink):
    """A persistent message to ``?exchange=`` with ``?routing_key=``, publisher-confirmed.

    The message is mandatory: one that no queue would receive counts as failed, not sent.
    """

    async def _connect(self) -> Any:
        import aio_pika

        plain = urlunsplit((self.parts.scheme, self.parts.netloc, self.parts.path, "", ""))
        connection = await aio_pika.connect(plain, timeout=self.destination.timeout_seconds)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        name = self.query.get("exchange", "")
        exchange = (
            await channel.get_exchange(name, ensure=True) if name else channel.default_exchange
        )
        return connection, exchange

    async def _publish(self, connection: Any, event: Event, payload: bytes) -> None:
        import aio_pika

        _, exchange = connection
        message = aio_pika.Message(
            payload,
            message_id=event.id,
            type=event.type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await exchange.publish(
            message,
            routing_key=self.query.get("routing_key", ""),
            mandatory=True,
            timeout=self.destination.timeout_seconds,
        )

    async def _disconnect(self, connection: Any) -> None:
        await connection[0].close()


class MqttSink(_BrokerSink):
    """QoS 1 publish to the URL's topic; delivered at the broker's ``PUBACK``."""

    async def _connect(self) -> Any:
        import aiomqtt

        client = aiomqtt.Client(
            hostname=self.parts.hostname or "localhost",
            port=self.parts.port or (8883 if self.parts.scheme == "mqtts" else 1883),
            username=unquote(self.parts.username) if self.parts.username else None,
            password=unquote(self.parts.password) if self.parts.password else None,
            identifier=f"cdrhub-{self.destination.name}-{id(self):x}",
            timeout=self.destination.timeout_seconds,
        )
        await client.__aenter__()
        return client

    async def _publish(self, connection: Any, event: Event, payload: bytes) -> None:
        await connection.publish(self.path, payload, qos=1)

    async def _disconnect(self, connection: Any) -> None:
        await connection.__aexit__(None, None, None)


_SINKS: dict[str, type[_BrokerSink]] = {
    "nats": NatsSink,
    "redis": RedisSink,
    "amqp": AmqpSink,
    "mqtt": MqttSink,
}


def make(destination: Destination, renderer: Renderer, guard: AddressGuard) -> Sink:
    """The broker sink for a destination's kind."""
    return _SINKS[destination.kind](destination, renderer, guard)
