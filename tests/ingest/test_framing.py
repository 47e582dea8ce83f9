"""HTTP framing against a real server over raw sockets: what the sender framed is what is served.

Each test checks the bytes on the wire: how many responses a connection gets, in which order,
whether the one before a close says ``Connection: close``, and that every body (stored or
quarantined) is byte for byte the one the sender framed, however its segments fall.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from cdrhub.cdr import VENDOR_EXAMPLE
from cdrhub.store import Store
from tests.helpers import TOKEN, Server

#: What the JDK's HttpClient adds to every request to an http:// URL (an HTTP/2 upgrade offer).
H2C_OFFER = (
    b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAA\r\n"
    b"Upgrade: h2c\r\n"
)
#: A request cdrhub answers with a recognisable body, closing: ends every exchange.
SENTINEL = b"GET /healthz HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
HEALTHY = b'{"status":"ok"}'
#: An authenticated body that is not JSON and holds header-like lines, an h2c offer included.
HEADER_LIKE = (
    b'{"callId":"header-like","other":"x"\r\nUpgrade: h2c\r\nupgrade:h2c\r\n\r\n'
    b"GET /readyz HTTP/1.1\r\nHost: s\r\nupgrade: h2c\r\n\r\n}"
)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


class Wire:
    """A raw client socket that sends exact bytes and parses exact responses."""

    def __init__(self, server: Server) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def send(self, *segments: bytes, gap: float = 0.02) -> None:
        """Each segment in its own write, with a pause between, so each is its own read."""
        for n, segment in enumerate(segments):
            if n:
                time.sleep(gap)
            self.sock.sendall(segment)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def _take_line(self) -> bytes | None:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                return None
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            assert self._fill(), "connection closed inside a response body"
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self) -> Response | None:
        """The next response, or None when the server closed the connection first."""
        status_line = self._take_line()
        if status_line is None:
            assert self.buffer == b"", self.buffer
            return None
        status = int(status_line.split(b" ")[1])
        headers: dict[str, str] = {}
        while line := self._take_line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:
            return self.response()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self._take_line() or b"0", 16):
                body += self._take(size)
                self._take(2)
            self._take(2)
        else:
            body = self._take(int(headers.get("content-length", "0")))
        return Response(status, headers, body)

    def all_responses(self) -> list[Response]:
        """Every response until the server closes the connection."""
        responses = []
        while (response := self.response()) is not None:
            responses.append(response)
        self.sock.close()
        return responses


def _push(body: bytes, *extra: bytes, chunks: int = 0, path: bytes = b"/cc/callback") -> bytes:
    """A push with the token; framed by Content-Length, or chunked in ``chunks`` pieces."""
    head = (
        b"POST " + path + b" HTTP/1.1\r\nHost: cdrhub\r\ntoken: " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\n" + b"".join(extra)
    )
    if not chunks:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    step = -(-len(body) // chunks)
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"


def _call(call_id: str, **fields: object) -> bytes:
    """A valid call log as JSON bytes, with text that looks like HTTP (escaped, as JSON does)."""
    record = {
        **VENDOR_EXAMPLE,
        "callId": call_id,
        "other": "\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n",
        **fields,
    }
    return json.dumps(record, ensure_ascii=False).encode()


def _kept(store: Store, body: bytes) -> list[bytes]:
    """Every quarantined body equal to ``body`` (exactly one when it was kept byte for byte)."""
    return [entry["body"] for entry in store.quarantined(limit=500) if entry["body"] == body]


def test_the_issue_reproduction_gets_exactly_one_response(serve: Callable[..., Server]) -> None:
    """Issue #12 §1: a body with four `upgrade:h2c` lines smuggled a GET /readyz in (no token)."""
    server = serve()
    smuggled = b"GET /readyz HTTP/1.1\r\nHost: s\r\nX: aaaaaa\r\n\r\n"
    body = b"{" + b"\r\nupgrade:h2c\r\n" * 4 + smuggled
    assert (len(smuggled), len(body)) == (44, 105)
    wire = Wire(server)
    wire.send(b"POST /healthz HTTP/1.1\r\nHost: s\r\nContent-Length: 105\r\n\r\n" + body)
    wire.send(SENTINEL)
    responses = wire.all_responses()
    assert [(r.status, r.body) for r in responses][1:] == [(200, HEALTHY)], responses
    assert responses[0].status == 405


@pytest.mark.parametrize("offer", [False, True], ids=["no-offer", "h2c-offer"])
@pytest.mark.parametrize("chunks", [0, 3], ids=["content-length", "chunked"])
def test_bodies_with_header_like_text_are_kept_byte_for_byte(
    serve: Callable[..., Server], store: Store, offer: bool, chunks: int
) -> None:
    """Header-like text in a body is body: stored (valid JSON) or quarantined, exactly as sent."""
    server = serve()
    extra = (H2C_OFFER,) if offer else ()
    call = _call("header-like-ok")
    wire = Wire(server)
    wire.send(_push(call, *extra, chunks=chunks), _push(HEADER_LIKE, *extra, chunks=chunks))
    wire.send(SENTINEL)
    responses = wire.all_responses()
    assert [r.status for r in responses] == [200, 400, 200], responses
    assert json.loads(responses[0].body)["result"] == "created"
    assert json.loads(responses[1].body)["error"] == "bad_json"
    assert responses[2].body == HEALTHY
    assert [v["body"] for v in store.raw_versions("header-like-ok")] == [call]
    assert _kept(store, HEADER_LIKE) == [HEADER_LIKE]


def test_pipelined_requests_are_answered_in_order_with_their_own_bodies(
    serve: Callable[..., Server], store: Store
) -> None:
    """Many requests in one write, mixed framings and offers: one answer each, in order."""
    server = serve()
    bodies = [_call(f"pipe-{n}", callDuration=n) for n in range(6)]
    requests = [
        _push(bodies[0], H2C_OFFER),
        _push(bodies[1], H2C_OFFER, chunks=4),
        _push(HEADER_LIKE, H2C_OFFER),
        _push(bodies[2]),
        b"GET /healthz HTTP/1.1\r\nHost: s\r\n" + H2C_OFFER + b"\r\n",
        _push(bodies[3], chunks=2),
        _push(bodies[4], H2C_OFFER, b"Expect: 100-continue\r\n"),
        _push(bodies[5], H2C_OFFER, path=b"/callback"),
    ]
    wire = Wire(server)
    wire.send(b"".join(requests) + SENTINEL)
    responses = wire.all_responses()
    assert [r.status for r in responses] == [200, 200, 400, 200, 200, 200, 200, 200, 200]
    assert [r.body for r in responses][4::4] == [HEALTHY, HEALTHY], responses
    for n, body in enumerate(bodies):
        assert [v["body"] for v in store.raw_versions(f"pipe-{n}")] == [body]
    assert _kept(store, HEADER_LIKE) == [HEADER_LIKE]
    assert store.count_calls() == 6


def test_requests_split_at_every_offset_near_the_header_end(
    serve: Callable[..., Server], store: Store
) -> None:
    """Two segments, cut at each byte from before the `Upgrade` line to inside the body.

    The cut falls inside the offer, inside the `\\r\\n\\r\\n` that ends the head, and inside
    the body's own header-like text; each push must be answered once and kept exactly.
    """
    server = serve()
    wire = Wire(server)
    quarantined = 0
    for body in (None, HEADER_LIKE):
        for offset in range(90):
            sent = body if body is not None else _call(f"split-{offset}", callDuration=offset)
            request = _push(sent, H2C_OFFER)
            cut = request.index(b"Upgrade: h2c") - 2 + offset  # to 50 bytes into the body
            wire.send(request[:cut], request[cut:])
            response = wire.response()
            assert response is not None, (body, cut)
            assert response.status == (200 if body is None else 400), (cut, response)
            assert not response.closes
            if body is None:
                assert [v["body"] for v in store.raw_versions(f"split-{offset}")] == [sent]
            else:
                quarantined += 1
    wire.send(SENTINEL)
    assert [r.body for r in wire.all_responses()] == [HEALTHY]
    assert store.count_calls() == 90
    assert len(_kept(store, HEADER_LIKE)) == quarantined == 90


def test_a_request_split_into_single_bytes_keeps_its_body(
    serve: Callable[..., Server], store: Store
) -> None:
    """The extreme split: the head and the start of the body one byte per segment."""
    server = serve()
    body = _call("bytewise")
    request = _push(body, H2C_OFFER)
    cut = request.index(b"\r\n\r\n") + 12
    wire = Wire(server)
    wire.send(*[request[i : i + 1] for i in range(cut)], request[cut:], gap=0.001)
    wire.send(SENTINEL)
    assert [r.status for r in wire.all_responses()] == [200, 200]
    assert [v["body"] for v in store.raw_versions("bytewise")] == [body]


@pytest.mark.parametrize("when", ["same-segment", "later-segment"])
def test_a_content_length_shorter_than_the_body(
    serve: Callable[..., Server], store: Store, when: str
) -> None:
    """The push as framed gets its real answer; the bytes after it a 400 that closes.

    The client reads, in order: 200 for the call its Content-Length framed (stored as framed),
    then 400 `invalid_http` naming Content-Length, with `Connection: close`; then the close.
    """
    server = serve(CDRHUB_LOG_PUSHES="true")
    framed = json.dumps({**VENDOR_EXAMPLE, "callId": "short-cl"}).encode()
    trailing = b',"intent":"lost"}'
    request = _push(framed)
    wire = Wire(server)
    if when == "same-segment":
        wire.send(request + trailing)
        responses = wire.all_responses()
    else:
        wire.send(request)
        stored = wire.response()
        wire.send(trailing)
        responses = [stored, *wire.all_responses()]
    assert [r.status for r in responses if r] == [200, 400], responses
    stored, refused = responses
    assert stored is not None and refused is not None
    assert json.loads(stored.body) == {"ok": True, "callId": "short-cl", "result": "created"}
    assert not stored.closes and refused.closes
    error = json.loads(refused.body)
    assert error["error"] == "invalid_http"
    assert error["fields"] == [
        {
            "field": "Content-Length",
            "value": str(len(framed)),
            "expected": "the body's length in bytes: the bytes after the body must start"
            " the next request",
        }
    ]
    assert [v["body"] for v in store.raw_versions("short-cl")] == [framed]
    log = server.log.read_text()
    assert "push 200 created call short-cl" in log and "invalid HTTP request from" in log


def test_a_broken_chunked_body_is_refused_and_nothing_is_stored(
    serve: Callable[..., Server], store: Store
) -> None:
    """When the request being received is the broken one, it alone gets the 400, and closes."""
    server = serve()
    good = _call("before-broken")
    broken = _push(_call("broken"), chunks=2).replace(b"\r\n0\r\n\r\n", b"\r\nzz\r\n\r\n")
    wire = Wire(server)
    wire.send(_push(good) + broken)
    responses = wire.all_responses()
    assert [(r.status, r.closes) for r in responses] == [(200, False), (400, True)], responses
    assert json.loads(responses[1].body)["error"] == "invalid_http"
    assert store.get_call("broken") is None
    assert [v["body"] for v in store.raw_versions("before-broken")] == [good]


def _honest_close(wire: Wire, response: Response) -> None:
    """A response says `Connection: close` exactly when the server then closes."""
    if response.closes:
        assert wire.response() is None, "data after a response that said close"
    else:
        wire.send(SENTINEL)
        assert [r.body for r in wire.all_responses()] == [HEALTHY], response


def test_an_app_error_500_keeps_the_connection_or_says_close(
    serve: Callable[..., Server], store: Store, api_key: str
) -> None:
    """A read that fails (its table renamed away under the server) is a 500 on a sound socket."""
    server = serve()
    with store.write_engine.begin() as conn:
        conn.execute(text("ALTER TABLE calls RENAME TO calls_away"))
    wire = Wire(server)
    wire.send(
        b"GET /api/calls HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer %s\r\n\r\n"
        % (api_key.encode())
    )
    response = wire.response()
    assert response is not None and response.status == 500, response
    assert json.loads(response.body)["error"] == "internal_error"
    _honest_close(wire, response)


def test_every_push_error_response_is_honest_about_the_connection(
    serve: Callable[..., Server], store: Store
) -> None:
    """500/503 (the table is gone, no spool), 401, 422, 413, 400: close is said iff done."""
    server = serve(CDRHUB_SPOOL="false", CDRHUB_MAX_BODY_BYTES="2000")
    cases = [
        (_push(_call("no-table")), {500, 503}),  # PostgreSQL: 500, SQLite: 503
        (_push(b"{}").replace(TOKEN.encode(), b"wrong-token"), {401}),
        (_push(b'{"callId":"x","direction":7}'), {422}),
        (_push(b"x" * 3000), {413}),
        (b"BREW /pot HTTP/1.1\r\n\r\n", {400}),
    ]
    with store.write_engine.begin() as conn:
        conn.execute(text("ALTER TABLE calls RENAME TO calls_away"))
    for request, status in cases:
        wire = Wire(server)
        wire.send(request)
        response = wire.response()
        assert response is not None and response.status in status, (status, response)
        _honest_close(wire, response)


@pytest.mark.parametrize("protocol", [b"h2c", b"websocket", b"TLS/1.2", b"foo"])
def test_any_declined_upgrade_keeps_a_body_that_comes_later(
    serve: Callable[..., Server], store: Store, protocol: bytes
) -> None:
    """Not only h2c: any offer we do not take is ignored, and the body is still the body."""
    server = serve()
    body = _call(f"offer-{protocol.decode()}")
    request = _push(body, b"Connection: upgrade\r\nUpgrade: " + protocol + b"\r\n")
    head_end = request.index(b"\r\n\r\n") + 4
    wire = Wire(server)
    wire.send(request[:head_end], request[head_end:])
    wire.send(SENTINEL)
    assert [r.status for r in wire.all_responses()] == [200, 200]
    assert [v["body"] for v in store.raw_versions(f"offer-{protocol.decode()}")] == [body]


@pytest.mark.parametrize("target", [b"/cc/callback", b"example.com:443"])
def test_what_follows_a_connect_is_never_a_request(
    serve: Callable[..., Server], target: bytes
) -> None:
    """CONNECT makes the rest of the connection a tunnel: it is answered and closed, not read."""
    server = serve()
    wire = Wire(server)
    wire.send(b"CONNECT " + target + b" HTTP/1.1\r\nHost: s\r\n\r\n" + SENTINEL)
    responses = wire.all_responses()
    assert len(responses) == 1 and responses[0].closes, responses
    assert responses[0].status in (400, 405), responses
