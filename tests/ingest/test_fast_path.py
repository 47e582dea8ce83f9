"""The protocol's fast path for pushes: a valid push whose body came with its head is answered
from the writer's future, without an ASGI task; everything else runs the endpoint as before.

These drive the server protocol `cdrhub serve` uses, on a recording transport, with the real
app and its lifespan (writer, store) running on the test's loop: whether a task was made is
the one thing a socket cannot show. ``test_framing.py`` and ``test_server.py`` drive the same
code through a real server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cdrhub.app import create_app
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import TOKEN, locked_sqlite
from tests.ingest.test_one_write import RecordingTransport, run


def _push(
    call_id: str, *, token: str = TOKEN, extra: bytes = b"", body: bytes | None = None
) -> bytes:
    payload = body if body is not None else json.dumps({"callId": call_id}).encode()
    return (
        b"POST /cc/callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"token: "
        + token.encode()
        + b"\r\n"
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(payload)
        + payload
    )


@asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[tuple[Any, RecordingTransport]]:
    """The real app, started, behind the server protocol on a recording transport."""
    import uvicorn
    from uvicorn.server import ServerState

    from cdrhub.ingest import DeclineH2CHttpToolsProtocol

    app = create_app(settings)
    # As `cdrhub serve` configures uvicorn (cdrhub.server.run): no proxy-header middleware.
    config = uvicorn.Config(
        app, http=DeclineH2CHttpToolsProtocol, log_config=None, proxy_headers=False
    )
    config.load()
    async with app.router.lifespan_context(app):
        state = ServerState()
        state.default_headers = [(b"date", b"Tue, 08 Dec 2026 00:00:00 GMT")]  # uvicorn's
        protocol = DeclineH2CHttpToolsProtocol(config=config, server_state=state, app_state={})
        transport = RecordingTransport()
        protocol.connection_made(transport)
        try:
            yield protocol, transport
        finally:
            protocol.connection_lost(None)


async def _answers(transport: RecordingTransport, count: int) -> list[tuple[bytes, dict[str, Any]]]:
    """The first ``count`` responses written, as (head, JSON body), once they are all there."""
    for _ in range(500):
        data = b"".join(transport.writes)
        if data.count(b"HTTP/1.1 ") >= count:
            break
        await asyncio.sleep(0.01)
    responses = []
    for raw in b"".join(transport.writes).split(b"HTTP/1.1 ")[1:]:
        head, body = raw.split(b"\r\n\r\n", 1)
        responses.append((b"HTTP/1.1 " + head, json.loads(body)))
    assert len(responses) == count
    return responses


@run
async def test_a_whole_push_is_answered_without_a_task(settings: Settings, store: Store) -> None:
    """The common case: head and body in one segment. It is stored, answered 200 in one
    write with the endpoint's headers, and no ASGI task was made for it."""
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(_push("fast-1"))
        assert not protocol.tasks  # handed to the writer from the parser's callback
        [(head, body)] = await _answers(transport, 1)
        assert not protocol.tasks
        assert len(transport.writes) == 1
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-type: application/json\r\n" in head
    assert b"x-request-id: " in head
    assert b"date: Tue, 08 Dec 2026 00:00:00 GMT\r\n" in head  # the server's own headers
    assert b"connection: close" not in head
    assert body == {"ok": True, "callId": "fast-1", "result": "created"}
    assert store.count_calls() == 1


@run
async def test_a_body_still_arriving_is_read_by_the_endpoint(
    settings: Settings, store: Store
) -> None:
    """A body that did not come with its head goes to the endpoint as an ASGI app (it reads
    the rest under its body timeout), and is answered the same way."""
    request = _push("slow-1")
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(request[:-3])
        assert len(protocol.tasks) == 1
        protocol.data_received(request[-3:])
        [(head, body)] = await _answers(transport, 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == {"ok": True, "callId": "slow-1", "result": "created"}
    assert store.count_calls() == 1


@run
async def test_refused_pushes_get_the_endpoints_answer_and_quarantine(
    settings: Settings, store: Store
) -> None:
    """A wrong token and a body that is not JSON fail the fast path's checks: the endpoint
    answers them (401, 400) as it always has, and keeps the authenticated one."""
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(_push("x", token="wrong-token-0000"))
        [(head, body)] = await _answers(transport, 1)
        assert head.startswith(b"HTTP/1.1 401 ") and body["error"] == "unauthorized"
        transport.writes.clear()
        protocol.data_received(_push("x", body=b'{"callId": "broken-1",'))
        [(head, body)] = await _answers(transport, 1)
    assert head.startswith(b"HTTP/1.1 400 ") and body["error"] == "bad_json"
    assert "kept in quarantine" in body["detail"]
    assert store.count_calls() == 0
    [entry] = store.quarantined()
    assert entry["reason"] == "bad_json" and bytes(entry["body"]) == b'{"callId": "broken-1",'


@run
async def test_pipelined_pushes_are_answered_in_order(settings: Settings, store: Store) -> None:
    """Three pushes in one segment, the second refused: each gets its own answer, in the
    order sent, whichever path answers it."""
    segment = _push("pipe-1") + _push("pipe-2", token="wrong-token-0000") + _push("pipe-3")
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(segment)
        answers = await _answers(transport, 3)
    assert [head[:12] for head, _ in answers] == [b"HTTP/1.1 200", b"HTTP/1.1 401", b"HTTP/1.1 200"]
    assert [body.get("callId") for _, body in answers] == ["pipe-1", None, "pipe-3"]
    assert store.count_calls() == 2


@run
async def test_a_sender_that_closes_gets_connection_close(settings: Settings) -> None:
    """``Connection: close`` from the sender: the fast answer says so and closes."""
    async with _serving(settings) as (protocol, transport):
        protocol.data_received(_push("close-1", extra=b"Connection: close\r\n"))
        [(head, body)] = await _answers(transport, 1)
        assert transport.closed
    assert head.endswith(b"\r\nconnection: close")
    assert body["result"] == "created"


@run
async def test_a_writer_error_is_answered_by_the_endpoint(tmp_path: Path) -> None:
    """When the writer raises (here: the SQLite file is locked by another process and there
    is no spool), the push goes to the endpoint, which tries once more and answers the
    documented 503; once the lock is gone the same push is stored."""
    settings, blocker = locked_sqlite(tmp_path, busy_timeout_ms=100)
    try:
        async with _serving(settings) as (protocol, transport):
            blocker.execute("BEGIN EXCLUSIVE")
            protocol.data_received(_push("down-1"))
            [(head, body)] = await _answers(transport, 1)
            assert head.startswith(b"HTTP/1.1 503 ")
            assert body["error"] == "store_unavailable"
            blocker.execute("ROLLBACK")
            transport.writes.clear()
            protocol.data_received(_push("down-1"))  # NXCC's retry
            [(head, body)] = await _answers(transport, 1)
            assert body == {"ok": True, "callId": "down-1", "result": "created"}
    finally:
        blocker.close()


@run
async def test_pushes_queued_in_one_pass_are_committed_together_in_order(
    settings: Settings, store: Store
) -> None:
    """The writer gets what the event loop queued in one pass as one group: one commit (one
    sync) for all of them, in the order queued, so a correction queued after the version it
    corrects wins."""
    from cdrhub.ingest.writer import BatchWriter
    from cdrhub.ops import Metrics
    from cdrhub.store import Push

    metrics = Metrics()
    writer = BatchWriter(store, metrics=metrics)
    writer.start()
    try:
        bodies = [json.dumps({"callId": f"group-{n}"}).encode() for n in range(20)]
        bodies.append(json.dumps({"callId": "group-3", "agentName": "corrected"}).encode())
        futures = []
        for body in bodies:  # one pass of the loop, which also parses other requests meanwhile
            futures.append(writer.enqueue(Push(None, body)))
            time.sleep(0.002)  # (the GIL is free here: a writer given items would commit them)
        results = await asyncio.gather(*futures)
    finally:
        await writer.stop()
    assert results == ["created"] * 20 + ["updated"]
    count = metrics.registry.get_sample_value("cdrhub_commit_items_count")
    total = metrics.registry.get_sample_value("cdrhub_commit_items_sum")
    assert (count, total) == (1, 21)
    assert store.count_calls() == 20
    assert store.get_call("group-3")["agent_name"] == "corrected"


@run
async def test_a_bug_in_the_fast_answer_still_gets_the_push_answered(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """Should building the fast answer fail (a bug of ours), the stored push is not left
    unanswered: the endpoint answers it (``duplicate``: it was stored), and the log says why."""
    async with _serving(settings) as (protocol, transport):

        def broken(*_: Any) -> None:
            raise RuntimeError("a bug in the fast path")

        monkeypatch.setattr(protocol._fast, "answered", broken)
        protocol.data_received(_push("bug-1"))
        [(head, body)] = await _answers(transport, 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == {"ok": True, "callId": "bug-1", "result": "duplicate"}
    assert "answering push bug-1 failed" in caplog.text
    assert store.count_calls() == 1
