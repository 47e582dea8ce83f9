"""Sending one event to one destination, by kind; every sink answers with a :class:`Result`.

A sink is created per destination and reused for all its events (one HTTP connection pool,
one broker connection). ``send`` never raises for a failed delivery: it says what happened,
so the deliverer can record it and schedule the retry. Secrets never enter a ``Result``.
HTTP goes through aiohttp: on the benchmark machine it sent 6 to 12 times as many requests
per second as httpx did (BENCHMARKS.md, "Forwarding: delivery rate from one process").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from cdrhub import __version__
from cdrhub.forward import schedule
from cdrhub.forward.destinations import Destination, mask_text
from cdrhub.forward.events import Event, Renderer

if TYPE_CHECKING:
    import aiohttp

EXCERPT = 500


@dataclass(frozen=True)
class Result:
    """What one attempt did. ``gone``: the destination said 410, stop sending to it."""

    ok: bool
    status: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: float | None = None
    gone: bool = False


class Sink(Protocol):
    async def send(self, event: Event) -> Result: ...

    async def close(self) -> None: ...


def sign(secret: str, msg_id: str, timestamp: int, payload: bytes) -> str:
    """A Standard Webhooks ``v1`` signature: HMAC-SHA256 of ``id.timestamp.payload``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class AddressGuard:
    """Refuses destinations whose host resolves outside ``CDRHUB_FORWARD_NETWORKS``.

    Empty networks allow everything (destinations are usually internal systems). The check
    resolves the name before each connection attempt; docs/forwarding.md says what it defends.
    """

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    async def check(self, url: str) -> str | None:
        """None when the URL's host may be reached, else why not."""
        if not self.networks:
            return None
        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 0)
        except socket.gaierror as exc:
            return f"cannot resolve {host}: {exc}"
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not any(address in network for network in self.networks):
                return f"{host} resolves to {address}, outside CDRHUB_FORWARD_NETWORKS"
        return None


class HttpSink:
    """Webhooks (Standard Webhooks, signed) and relays (NXCC's bytes and ``token`` header)."""

    def __init__(self, destination: Destination, renderer: Renderer, guard: AddressGuard) -> None:
        self.destination = destination
        self.renderer = renderer
        self.guard = guard
        self.relay = destination.kind == "relay"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The connection pool, made in the running loop at the first send.

        aiohttp is imported here, at the first webhook, not with the module: it is about
        20 MB of every ``cdrhub serve``, most of which forward to no webhook.
        """
        import aiohttp

        if self._session is None:
            size = self.destination.concurrency
            connector = aiohttp.TCPConnector(limit=size, limit_per_host=size)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    def _request(self, event: Event) -> tuple[bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json", "User-Agent": f"cdrhub/{__version__}"}
        if self.relay:
            assert self.destination.token is not None
            headers["token"] = self.destination.token
            return event.body, headers
        payload = self.renderer.payload(event)
        now = int(time.time())
        signatures = " ".join(
            sign(secret, event.id, now, payload)
            for secret in self.destination.signing_secrets(now * 1000)
        )
        headers |= {
            "webhook-id": event.id,
            "webhook-timestamp": str(now),
            "webhook-signature": signatures,
        }
        return payload, headers

    async def send(self, event: Event) -> Result:
        refused = await self.guard.check(self.destination.url)
        if refused:
            return Result(False, error=refused)
        content, headers = self._request(event)
        timeout = self.destination.timeout_seconds
        client = self._client()
        import aiohttp  # loaded by _client

        try:
            async with client.post(
                self.destination.url,
                data=content,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                status = response.status
                body = await response.read()
                location = response.headers.get("location", "?")
                wait = schedule.retry_after(response.headers.get("retry-after"))
                charset = response.charset or "utf-8"
        except TimeoutError:
            return Result(False, error=f"no answer within {timeout:g} s")
        except (aiohttp.ClientError, ValueError) as exc:
            # A malformed answer's message quotes the answer: keep it to an excerpt's length.
            error = f"{type(exc).__name__}: {exc}"[:EXCERPT]
            return Result(False, error=mask_text(error, self.destination))
        excerpt = mask_text(_decode(body, charset)[:EXCERPT], self.destination) if body else None
        ok = status == 200 if self.relay else 200 <= status < 300
        if ok:
            return Result(True, status=status, response=excerpt)
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += f": redirect to {location} not followed"
        return Result(
            False,
            status=status,
            error=error,
            response=excerpt,
            retry_after=wait,
            gone=status == 410,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _decode(body: bytes, charset: str) -> str:
    try:
        return body.decode(charset, "replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", "replace")
