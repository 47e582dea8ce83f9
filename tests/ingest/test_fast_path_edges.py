"""The protocol's fast path at its edges: a queued push whose body stalls, the writer's
``batch_max``, a sender that does not read its answers, a sender that leaves while its push
is refused, shutdown, HTTP/1.0 and large bodies. Protocol tests drive the real app on a
recording transport (as ``test_fast_path.py`` does); the ``Server`` tests run ``cdrhub serve``."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import pytest

from cdrhub.settings import Settings
from cdrhub.store import Push, Store
from tests.helpers import TOKEN, Server
from tests.ingest.test_fast_path import _answers, _push, _serving
from tests.ingest.test_one_write import run

HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def _partial_push(token: str | None = None) -> bytes:
    """A push's head and the first bytes of its body (the rest never comes); without a token
    argument, with a token that is not configured."""
    return _push("stalled", token=token or "not-a-configured-token")[:-10]


# -- a queued push whose body stalls still has the endpoint's timers ---------------------------


@run
@pytest.mark.parametrize("token", [TOKEN, "wrong-token"], ids=["token", "no-token"])
@pytest.mark.parametrize("first", [HEALTHZ, _push("first-1")], ids=["healthz", "push"])
async def test_a_stalled_pipelined_push_is_answered(
    settings: Settings, first: bytes, token: str
) -> None:
    """A push queued behind another request, whose body stops coming, is read by the
    endpoint when its turn comes: 408 (closing) after CDRHUB_BODY_TIMEOUT_SECONDS, or 401 at
    once without a valid token. (Left waiting for bytes that never come, it would hold the
    connection with no timer at all.)"""
    settings = settings.model_copy(update={"body_timeout_seconds": 0.3})
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(first + _partial_push(token))
        await asyncio.sleep(1.5)  # five body timeouts
        answers = await _answers(transport, 2)
    status = b"408" if token == TOKEN else b"401"
    assert answers[1][0].startswith(b"HTTP/1.1 " + status)


def test_a_stalled_pipelined_push_holds_a_real_connection(
    serve: Callable[..., Server],
) -> None:
    """The same on a real server: a client without a token that stalls a queued push is
    answered 401 and its connection is closed (by the keep-alive timer), within every
    timeout (header 1 s, body 1 s, keep-alive 5 s)."""
    server = serve(CDRHUB_BODY_TIMEOUT_SECONDS="1", CDRHUB_HEADER_TIMEOUT_SECONDS="1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=8)
    sock.sendall(HEALTHZ + _partial_push())
    received, closed = b"", False
    try:
        while not closed:
            data = sock.recv(65536)
            received += data
            closed = not data
    except TimeoutError:
        pass
    finally:
        sock.close()
    assert received.count(b"HTTP/1.1 ") == 2, received
    assert closed, "still open after 8 s"


# -- batch_max is the most items one commit stores ---------------------------------------------


@run
async def test_batch_max_is_still_the_most_items_in_one_commit(store: Store) -> None:
    """A group handed over in one pass of the loop is committed batch_max items at a time."""
    from cdrhub.ingest.writer import BatchWriter
    from cdrhub.ops import Metrics

    metrics = Metrics()
    writer = BatchWriter(store, batch_max=2, metrics=metrics)
    writer.start()
    try:
        futures = [
            writer.enqueue(Push(None, json.dumps({"callId": f"max-{n}"}).encode()))
            for n in range(5)
        ]  # one pass of the loop: one group of 5
        await asyncio.gather(*futures)
    finally:
        await writer.stop()
    sample = metrics.registry.get_sample_value
    count, total = sample("cdrhub_commit_items_count"), sample("cdrhub_commit_items_sum")
    assert total == 5
    assert count >= 3, f"{total:g} items in {count:g} commit(s) with batch_max=2"


# -- a sender that does not read its answers is not served further ---------------------------


class _PausingTransport:
    """A recording transport whose buffer is 'full': it tells the protocol to pause writing
    at the first write, as asyncio's transports do past their high-water mark."""

    def __init__(self, inner: Any, protocol: Any) -> None:
        self._inner, self._protocol = inner, protocol

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self._protocol.pause_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@run
async def test_pipelined_pushes_wait_while_writing_is_paused(settings: Settings) -> None:
    """As uvicorn's send awaits flow.drain() while the transport's buffer is over its
    high-water mark, a fast answer that fills it holds the next pipelined request back (and
    the reading) until the sender reads: its write buffer cannot grow without bound."""
    async with _serving(settings) as (protocol, transport):
        protocol.transport = _PausingTransport(transport, protocol)  # cycles made from now on
        protocol.data_received(b"".join(_push(f"bp-{n}") for n in range(3)))
        await asyncio.sleep(0.5)
        written = b"".join(transport.writes).count(b"HTTP/1.1 200")
        protocol.resume_writing()
    assert written == 1, f"{written} answers written while the transport asked to pause"


# -- a refused write is quarantined even after the sender left --------------------------------


@run
async def test_a_refused_write_after_a_disconnect_is_still_quarantined(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint keeps a valid push the database refused (a bug of ours) in the
    quarantine, whether or not the sender is still there: it was submitted before it left.
    (The endpoint then runs on a disconnected request, so it is given the body received.)"""
    async with _serving(settings) as (protocol, transport):
        writer = protocol.app.callback._writer()
        real_write = writer._store.write

        def refuse_pushes(items: list[Any]) -> Any:
            if any(isinstance(item, Push) for item in items):
                time.sleep(0.3)  # (the writer thread) a commit the sender does not wait for
                raise ValueError("a bug of ours: this push cannot be stored")
            return real_write(items)

        monkeypatch.setattr(writer._store, "write", refuse_pushes)
        protocol.data_received(_push("refused-1"))
        await asyncio.sleep(0.1)  # submitted (either path); the commit is under way
        protocol.connection_lost(None)  # the sender gives up before the commit
        for _ in range(100):
            await asyncio.sleep(0.01)
            if store.quarantined() and not protocol.tasks:
                break
        protocol.connection_made(transport)  # for _serving's connection_lost
    assert [entry["call_id"] for entry in store.quarantined()] == ["refused-1"]


# -- shutdown, HTTP/1.0, large bodies --------------------------------------------------------------


@run
async def test_shutdown_with_a_fast_push_in_flight_answers_it_and_closes(
    settings: Settings, store: Store
) -> None:
    """uvicorn's shutdown while two pushes wait for their commit: both are answered, the
    last with Connection: close, and the connection closes."""
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(_push("shut-1") + _push("shut-2"))
        protocol.shutdown()  # uvicorn's Server.shutdown, before the writer settles
        answers = await _answers(transport, 2)
        assert transport.closed
    assert [b.get("callId") for _, b in answers] == ["shut-1", "shut-2"]
    assert b"connection: close" not in answers[0][0]  # as uvicorn: shutdown marks the newest
    assert answers[1][0].endswith(b"connection: close")
    assert store.count_calls() == 2


@run
async def test_http_1_0_and_large_bodies(settings: Settings, store: Store) -> None:
    """A body over uvicorn's 64 KiB read limit pauses reading and the answer resumes it;
    an HTTP/1.0 push is answered with Connection: close and the connection closed."""
    big = json.dumps({"callId": "big-1", "pad": "x" * 70_000}).encode()
    settings = settings.model_copy(update={"max_body_bytes": 200_000})
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(_push("big-1", body=big))  # over HIGH_WATER: reading paused
        assert protocol.flow.read_paused and not protocol.tasks
        [(head, body)] = await _answers(transport, 1)
        assert not protocol.flow.read_paused  # resumed by on_response_complete
        transport.writes.clear()
        protocol.data_received(_push("old-1").replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1))
        [(head10, body10)] = await _answers(transport, 1)
        assert transport.closed
    assert body["result"] == "created" and body10["result"] == "created"
    assert head10.endswith(b"connection: close")


def test_sigterm_with_a_fast_push_waiting_for_its_commit(
    serve: Callable[..., Server], settings: Settings, store: Store
) -> None:
    """A whole push (fast path) whose commit waits for another process's SQLite lock when
    SIGTERM comes: answered 200 once committed, with Connection: close; exit 0."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("needs SQLite's file lock")
    server = serve(CDRHUB_SQLITE_BUSY_TIMEOUT_MS="10000")
    path = settings.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(_push("sigterm-fast"))
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        blocker.execute("ROLLBACK")
        reply = sock.recv(4096)
    finally:
        sock.close()
        blocker.close()
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert b"connection: close" in reply
    assert server.process.wait(timeout=20) == 0
    assert store.get_call("sigterm-fast") is not None
