"""The server protocol's per-request work: an answer of known length in one socket write, a body
that is all in marked so the push endpoint needs no timer for it.

uvicorn writes a response's head and body in two socket writes; :class:`OneWriteCycle` joins
them when the head names a ``Content-Length`` (every push answer does), and leaves streamed
answers (exports) as uvicorn writes them. These tests run uvicorn's own cycle code on a
transport that records each write, the one thing a socket cannot show from the other end
(loopback merges segments). ``test_framing.py`` checks the same answers byte for byte on a
real server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from cdrhub.ingest.protocol import OneWriteCycle


class RecordingTransport(asyncio.Transport):
    """Keeps every write as it was made, and whether the connection was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass  # FlowControl calls these; a recording transport has nothing to pause

    def resume_reading(self) -> None:
        pass


def _cycle(method: str = "POST", keep_alive: bool = True) -> tuple[Any, RecordingTransport]:
    transport = RecordingTransport()
    logger = logging.getLogger("test")
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": method, "path": "/cc/callback", "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport,
        flow=FlowControl(transport),
        logger=logger,
        access_logger=logger,
        access_log=False,
        default_headers=[(b"date", b"Mon, 07 Dec 2026 17:00:00 GMT")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    cycle.__class__ = OneWriteCycle  # what DeclineH2CHttpToolsProtocol does to each new cycle
    return cycle, transport


def run(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body on a fresh event loop (the cycle needs one for its events)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


BODY = b'{"ok":true,"callId":"c1","result":"accepted"}'
SIZED = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


@pytest.mark.parametrize("keep_alive", [True, False])
@run
async def test_an_answer_of_known_length_is_one_write(keep_alive: bool) -> None:
    """A push's answer (head with Content-Length, then the body) reaches the socket as one
    write holding the whole response; a closing answer is still written before the close."""
    cycle, transport = _cycle(keep_alive=keep_alive)
    await cycle.send({"type": "http.response.start", "status": 200, "headers": SIZED})
    assert transport.writes == []
    await cycle.send({"type": "http.response.body", "body": BODY})
    [written] = transport.writes
    head, body = written.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: %d" % len(BODY) in head
    assert body == BODY
    assert cycle.response_complete
    assert transport.closed is not keep_alive
    assert (b"connection: close" in head) is not keep_alive


@run
async def test_a_streamed_answer_sends_its_head_at_once() -> None:
    """An answer without Content-Length (an export streamed in chunks) gets its head on the
    wire before its first rows exist, as uvicorn does: nothing is held back."""
    cycle, transport = _cycle(method="GET")
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/csv")],
    }
    await cycle.send(start)
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n")
    await cycle.send({"type": "http.response.body", "body": b"a,b\r\n", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b""})
    assert len(transport.writes) == 3
    assert b"".join(transport.writes).endswith(b"5\r\na,b\r\n\r\n0\r\n\r\n")


@run
async def test_a_head_request_gets_its_head_without_a_body() -> None:
    """HEAD: uvicorn writes no body, so the held head is written when the (empty) body is
    sent: one write, the head alone."""
    cycle, transport = _cycle(method="HEAD")
    await cycle.send({"type": "http.response.start", "status": 200, "headers": SIZED})
    await cycle.send({"type": "http.response.body", "body": b""})
    [written] = transport.writes
    assert written.endswith(b"\r\n\r\n") and written.startswith(b"HTTP/1.1 200 OK")
    assert cycle.response_complete


@run
async def test_a_body_longer_than_its_length_still_fails_as_in_uvicorn() -> None:
    """The held head changes nothing of uvicorn's checks: a body longer than the declared
    length is the app's error, raised to the server as before."""
    cycle, _ = _cycle()
    await cycle.send({"type": "http.response.start", "status": 200, "headers": SIZED})
    with pytest.raises(RuntimeError, match="longer than Content-Length"):
        await cycle.send({"type": "http.response.body", "body": BODY + b"x"})


def _protocol(app: Any, header_timeout: float = 10.0) -> tuple[Any, RecordingTransport]:
    """The server protocol as `cdrhub serve` runs it, on a recording transport."""
    import uvicorn
    from uvicorn.server import ServerState

    from cdrhub.ingest import DeclineH2CHttpToolsProtocol

    config = uvicorn.Config(app, http=DeclineH2CHttpToolsProtocol, log_config=None)
    config.load()
    protocol = DeclineH2CHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    protocol.header_timeout = header_timeout
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _answer(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": SIZED})
    await send({"type": "http.response.body", "body": BODY})


@run
async def test_the_server_protocol_gives_each_request_the_one_write_cycle() -> None:
    """The protocol cdrhub serves with (uvicorn's httptools one, as `cdrhub serve` runs it)
    answers a push through OneWriteCycle: its answer is a single write, head and body."""
    protocol, transport = _protocol(_answer)
    protocol.data_received(
        b"POST /cc/callback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    assert type(protocol.cycle) is OneWriteCycle
    await asyncio.wait(protocol.tasks, timeout=5)
    [written] = transport.writes
    assert written.startswith(b"HTTP/1.1 200 OK\r\n") and written.endswith(b"\r\n\r\n" + BODY)
    protocol.connection_lost(None)


@run
async def test_the_protocol_marks_a_request_whose_body_is_all_in() -> None:
    """The push endpoint skips its body timer only for a request whose whole body the server
    already holds: the protocol marks it so once llhttp has parsed the end of the body, and a
    request still waiting for body bytes is unmarked (its body timeout still applies)."""
    from cdrhub.ingest.protocol import BODY_COMPLETE

    seen: list[bool] = []
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(bool(scope.get(BODY_COMPLETE)))
        await release.wait()

    protocol, _ = _protocol(app)
    head = b"POST /cc/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n"
    protocol.data_received(head + b"{}")  # two of the four bytes
    await asyncio.sleep(0)
    assert seen == [False]
    protocol.data_received(b"  ")
    assert protocol.cycle.scope[BODY_COMPLETE] is True  # marked as the body completes
    release.set()
    protocol.connection_lost(None)


@run
async def test_headers_started_late_still_end_at_the_connections_deadline() -> None:
    """The first request's headers must be complete within the header timeout counted from
    the connection, however late their first byte comes (a slowloris cannot buy time)."""
    protocol, transport = _protocol(_answer, header_timeout=0.3)
    await asyncio.sleep(0.2)
    protocol.data_received(b"POST /cc/callback HTTP/1.1\r\nHo")
    await asyncio.sleep(0.15)  # 0.35 s after the connection, 0.15 s after the first byte
    assert transport.closed
    protocol.connection_lost(None)


@run
async def test_each_later_request_gets_the_whole_header_timeout() -> None:
    """On a keep-alive connection the timer made for the connection serves every request: a
    later request's headers get the whole timeout from their first byte, and end after it."""
    protocol, transport = _protocol(_answer, header_timeout=0.3)
    request = b"POST /cc/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    protocol.data_received(request)
    await asyncio.wait(protocol.tasks, timeout=5)
    assert len(transport.writes) == 1
    await asyncio.sleep(0.2)
    protocol.data_received(b"POST /cc/callback HTTP/1.1\r\nHo")  # at 0.2 s
    await asyncio.sleep(0.2)  # 0.4 s: past the connection's first deadline
    assert not transport.closed
    await asyncio.sleep(0.2)  # 0.6 s: past this request's own
    assert transport.closed
    protocol.connection_lost(None)
