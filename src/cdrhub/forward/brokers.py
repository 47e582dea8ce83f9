"""Message-broker sinks: NATS JetStream, Redis Streams, RabbitMQ and MQTT.

Each keeps one connection per destination, opened at the first event and opened again after
a failure, and counts an event delivered only on the broker's own acknowledgement: the
JetStream ack, the ``XADD`` reply, the publisher confirm, the ``PUBACK``. Every message
carries the event id where the broker has a place for it (``Nats-Msg-Id``, so JetStream
drops a repeat inside its duplicate window; AMQP ``message_id``; a Redis field).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import ssl
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from cdrhub.forward.destinations import Destination, mask_text
from cdrhub.forward.events import Event, Renderer
from cdrhub.forward.sinks import AddressGuard, Result, Sink

log = logging.getLogger("cdrhub.forward")


_DEFAULT_PORTS = {
    "nats": 4222,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "mqtt": 1883,
    "mqtts": 8883,
}


def _socket_error(exc: BaseException) -> OSError | None:
    """The operating system's own error under a client library's wrapping, if there is one.

    redis-py, aiormq and aiomqtt each wrap a refused or unresolvable connection in their own
    exception (with their own wording); the ``OSError`` is in the chain under it.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _BrokerSink(abc.ABC):
    """Shared connection handling: connect lazily, drop the connection on any failure.

    An error says which step failed: connecting (``cannot connect to KIND at HOST:PORT: ...``,
    e.g. ``Connection refused``) or the publish (the broker's own refusal, or no
    acknowledgement within the destination's timeout).
    """

    def __init__(self, destination: Destination, renderer: Renderer, guard: AddressGuard) -> None:
        self.destination = destination
        self.renderer = renderer
        self.guard = guard
        parts = urlsplit(destination.url)
        self.parts = parts
        self.query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.path = unquote(parts.path.lstrip("/"))
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
        self.where = f"{destination.kind} at {parts.hostname}:{port}"
        self._connection: Any = None
        self._connecting = asyncio.Lock()

    @abc.abstractmethod
    async def _connect(self) -> Any:
        """Open the broker connection (and channel, stream handle...) this sink reuses."""

    @abc.abstractmethod
    async def _publish(self, connection: Any, event: Event, payload: bytes) -> None:
        """Send one event and return once the broker acknowledged it."""

    @abc.abstractmethod
    async def _disconnect(self, connection: Any) -> None:
        """Close a connection (broken or not)."""

    async def send(self, event: Event) -> Result:
        refused = await self.guard.check(self.destination.url)
        if refused:
            return Result(False, error=refused)
        timeout = self.destination.timeout_seconds
        connection = None
        try:
            async with asyncio.timeout(timeout):
                async with self._connecting:
                    if self._connection is None:
                        self._connection = await self._connect()
                    connection = self._connection
                await self._publish(connection, event, self.renderer.payload(event))
        except TimeoutError:  # ours, or the client's own (nats-py's is a TimeoutError too)
            await self._reset(connection)
            if connection is None:
                return Result(False, error=f"cannot connect to {self.where} within {timeout:g} s")
            return Result(False, error=f"no acknowledgement from {self.where} within {timeout:g} s")
        except Exception as exc:
            await self._reset(connection)
            error = self._describe(exc)
            if connection is None:
                error = f"cannot connect to {self.where}: {error}"
            return Result(False, error=mask_text(error, self.destination))
        return Result(True)

    def _describe(self, exc: Exception) -> str:
        found = _socket_error(exc)
        if isinstance(found, ssl.SSLError):  # an OSError too, but its errno is not the story
            return f"TLS: {found}"
        if found is not None and found.errno and found.errno > 0:
            return os.strerror(found.errno)
        if found is not None and found.strerror:
            return found.strerror  # e.g. a name that does not resolve
        return f"{type(exc).__name__}: {exc}"

    async def _reset(self, failed: Any) -> None:
        """Drop the connection that failed (not one another send has opened since)."""
        if failed is None or failed is not self._connection:
            return
        self._connection = None
        await self._close_quietly(failed)

    async def _close_quietly(self, connection: Any) -> None:
        try:
            async with asyncio.timeout(self.destination.timeout_seconds):
                await self._disconnect(connection)
        except Exception:  # noqa: S110 - the connection is already broken; a new one follows
            pass

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._close_quietly(connection)


class NatsSink(_BrokerSink):
    """JetStream publish to the URL's subject; a stream must cover it (the operator's)."""

    async def _connect(self) -> Any:
        import nats
        from nats.errors import NoServersError

        server = urlunsplit((self.parts.scheme, self.parts.netloc, "", "", ""))
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            # nats-py's default logs every failed try with a traceback at ERROR; the attempt
            # records the failure already. Errors on a live connection are worth a warning.
            if connected:
                log.warning("NATS %s: %s", self.where, mask_text(str(exc), self.destination))
            else:
                errors.append(exc)

        connected = False
        try:
            # allow_reconnect=False alone does not fail fast: nats-py retries a refused server
            # up to max_reconnect_attempts (default 60) times, reconnect_time_wait (2 s) apart,
            # before its NoServersError. One retry, no wait: a refused port fails at once.
            client = await nats.connect(
                servers=[server],
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                connect_timeout=self.destination.timeout_seconds,
                error_cb=on_error,
            )
        except NoServersError:
            if errors:
                raise errors[-1] from None
            raise
        connected = True
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
        timeout = self.destination.timeout_seconds
        client = redis.from_url(plain, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
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
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            name = self.query.get("exchange", "")
            exchange = (
                await channel.get_exchange(name, ensure=True) if name else channel.default_exchange
            )
        except BaseException:
            # e.g. no such exchange: the connection is open and nobody else would close it.
            await self._close_quietly((connection, None))
            raise
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

    def _describe(self, exc: Exception) -> str:
        from aiormq.exceptions import PublishError

        if isinstance(exc, PublishError):
            returned = exc.message.delivery  # Basic.Return: mandatory and no queue took it
            return (
                f"RabbitMQ returned the message ({returned.reply_code} {returned.reply_text}): "
                f"no queue is bound to exchange {returned.exchange or '(default)'!r} with "
                f"routing key {returned.routing_key!r}"
            )
        return super()._describe(exc)


class MqttSink(_BrokerSink):
    """QoS 1 publish to the URL's topic; delivered at the broker's ``PUBACK``."""

    async def _connect(self) -> Any:
        import aiomqtt

        secure = self.parts.scheme.lower() == "mqtts"
        client = aiomqtt.Client(
            hostname=self.parts.hostname or "localhost",
            port=self.parts.port or (8883 if secure else 1883),
            username=unquote(self.parts.username) if self.parts.username else None,
            password=unquote(self.parts.password) if self.parts.password else None,
            # Unique per connection (a broker drops the older of two clients with one id), and
            # at most 23 characters, the length every MQTT 3.1.1 broker must accept.
            identifier=f"cdrhub-{uuid.uuid4().hex[:16]}",
            timeout=self.destination.timeout_seconds,
            tls_context=ssl.create_default_context() if secure else None,
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
