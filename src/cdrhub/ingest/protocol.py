"""The HTTP protocol cdrhub serves with: uvicorn's httptools one, with the framing fixes a
public receiver needs.

uvicorn's fast parser (httptools/llhttp) treats any request carrying ``Connection: Upgrade``
and ``Upgrade: ...`` as "no body follows": httptools tells llhttp to skip the body when the
upgrade flag is set, and uvicorn then ignores the upgrade it does not support. The JDK's
``java.net.http.HttpClient`` with default settings offers ``Upgrade: h2c`` on every request to an
``http://`` URL, so every push from such a sender would arrive with an empty body, and the body
would then be parsed as the next request. (Upstream: uvicorn issue #2722 and httptools issue
#124, both open; with ``Expect: 100-continue`` the JDK client even hangs.)

We decline such offers after llhttp has parsed the header block, never by editing the bytes
received: llhttp stops right after the head of a request it takes for an upgrade and says
where (``HttpParserUpgrade``'s offset), so we give a fresh parser that head again, rebuilt
from the fields llhttp parsed minus ``Upgrade``, followed by the unparsed bytes. The body and
any pipelined request are therefore framed by llhttp from ``Content-Length`` or chunked
encoding exactly as for any other request, and reach the app byte for byte as sent, however the
sender's segments fall. HTTP/1.1 lets a server ignore an upgrade offer, which is exactly what the
response then does. (An earlier version renamed ``upgrade: h2c`` wherever it appeared in the
bytes received, bodies included: each such line in a body lengthened it past its
``Content-Length`` and smuggled the tail in as a request.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import httptools
import msgspec
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

log = logging.getLogger("cdrhub.server")  # the name operators filter logs by; kept across moves
#: Scope key the protocol sets once a request's whole body has been received.
BODY_COMPLETE = "cdrhub.body_complete"


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request cycle, answering a response of known length in one socket write.

    uvicorn writes the status line and headers the moment the app sends
    ``http.response.start``, and the body with ``http.response.body``: two ``send`` system
    calls per answer, each running loopback TCP's whole path. They were about a third of the
    event loop's time per push (issue 15's profile), and every push answer is small and has a
    ``Content-Length``. So when the start names a length, its head is held and written with
    the body's first bytes; a streamed answer (no length: an export) is written as before, so
    its headers are not held back while its first rows are read.
    """

    _held: bytes | None = None

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "http.response.start"
            and not self.response_started
            and any(name.lower() == b"content-length" for name, _ in message.get("headers", ()))
        ):
            transport, holder = self.transport, _HeadHolder()
            self.transport = holder  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._held = b"".join(holder.written) if holder.written else None
            return
        if self._held is None:
            await super().send(message)
            return
        transport = self.transport
        prefixed = _HeadFirst(transport, self._held)
        self._held = None
        self.transport = prefixed  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            prefixed.flush()  # a HEAD answer writes no body, and an error none either


class _HeadHolder:
    """Collects what uvicorn writes for a response start, instead of sending it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _HeadFirst:
    """The connection's transport, with a held response head written before the first write."""

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self._transport = transport
        self._head: bytes | None = head

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None and not self._transport.is_closing():
            self._transport.write(self._head)
        self._head = None

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class DeclineH2CHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with three fixes a public receiver needs, and a fast path.

    1. It declines ``Upgrade`` offers (``h2c``, or any protocol it does not speak) instead of
       losing the body (see the module docstring). A WebSocket handshake, when uvicorn has a
       WebSocket library, is left to uvicorn; a ``CONNECT`` (whose following bytes are a
       tunnel, never a request) is answered with ``Connection: close`` and the connection closed.
    2. It closes connections whose request headers do not arrive within ``header_timeout``
       seconds, counted from the connection (or the request's first byte): uvicorn only times
       out idle keep-alive connections, so a slow or silent client could otherwise hold a
       connection forever (slowloris). The body has its own timeout in the push endpoint.
    3. Bytes that are not a valid request are answered with a JSON 400 and ``Connection:
       close`` *in their place*: requests received before them get their own answers first.
       uvicorn wrote its 400 at once, so a push whose ``Content-Length`` was shorter than its
       body was stored and answered 200 behind the sender's back while the sender read a 400.

    The fast path: a ``POST`` to one of the app's push paths whose whole body arrived with its
    head (nearly every push) is handed to the push endpoint's ``accept`` straight from the
    parser's callback, and answered from the writer's future: no task, no ASGI messages. A
    push that fails any check, a body still arriving, ``Expect: 100-continue``, or a writer
    error runs the endpoint as the ASGI app instead, on the same request, as every request did
    before (it answers the error and quarantines the body). Pipelined requests keep their
    order: uvicorn queues a request behind one not yet answered, whichever path answers it.
    """

    header_timeout: float = 10.0  # set from CDRHUB_HEADER_TIMEOUT_SECONDS by run()/app_from_env

    _header_timer: asyncio.TimerHandle | None = None
    #: When the header block being received began (the connection, or the request's first
    #: byte); None while no header block is being received.
    _head_since: float | None = None
    #: The head of a request whose upgrade offer is declined, to be parsed again without it.
    _declined_head: bytes | None = None
    #: Set once the bytes received cannot be parsed (or are a tunnel): the rest is never read.
    _unparseable: bool = False
    #: A 400 that waits for the answers to the requests received before the unparseable bytes.
    _pending_refusal: bytes | None = None
    #: The app's push endpoint (its ``accept`` and ``answered``) and the paths it serves; None
    #: for an app without one.
    _fast: Any = None
    _fast_paths: frozenset[str] = frozenset()
    #: A fast-path request whose body is still arriving, and its app: taken by
    #: on_message_complete, or run as an ASGI app when the bytes received end mid-body.
    _deferred: tuple[RequestResponseCycle, Any] | None = None
    #: True while data_received feeds the parser: only then can a request be deferred (the
    #: end of data_received is what starts or drops it). A pipelined request started from
    #: on_response_complete runs at once, with the endpoint's body timer.
    _parsing: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        self._arm_header_timer(self.header_timeout)
        endpoint = getattr(self.app, "callback", None)
        if endpoint is not None and hasattr(endpoint, "accept"):
            self._fast = endpoint
            self._fast_paths = getattr(self.app, "callback_paths", frozenset())

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._unparseable:
            return  # after a refusal nothing more is parsed; the connection is closing
        while True:
            try:
                self._parsing = True
                try:
                    self.parser.feed_data(data)
                finally:
                    self._parsing = False
            except httptools.HttpParserUpgrade as upgrade:
                if self._declined_head is None:
                    self._upgrade_not_declined()
                    return
                # llhttp stopped right after the head: parse it again, without the offer,
                # followed by everything after it (body, pipelined requests) untouched.
                data = self._declined_head + data[upgrade.args[0] :]
                self._declined_head = None
                self.parser = self._new_parser()
                continue
            except httptools.HttpParserError as error:
                self._refuse_unparseable(str(error) or type(error).__name__)
            if self._deferred is not None:  # its body did not all come with its head
                cycle, app = self._deferred
                self._deferred = None
                super()._start_asgi_task(cycle, app)  # the endpoint reads it, with its timer
            return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_since is None:  # else the connection's first request: from the connection
            self._head_since = self.loop.time()
        if self._header_timer is None:
            self._arm_header_timer(self.header_timeout)

    def on_headers_complete(self) -> None:
        # The timer is left armed: it finds no header block pending when it fires, and a
        # keep-alive sender's next requests reuse it (a timer made and cancelled per request
        # cost each push about 2 us, issue 15's profile).
        self._head_since = None
        if self.parser.should_upgrade() and not self._should_upgrade():
            if self.parser.get_method() != b"CONNECT":
                self._declined_head = self._head_without_upgrade()
                return  # no cycle for this parse: the head is parsed again in data_received
            super().on_headers_complete()
            self.cycle.keep_alive = False  # what follows a CONNECT is a tunnel we do not serve
            return
        super().on_headers_complete()
        if type(self.cycle) is RequestResponseCycle:  # the cycle uvicorn just made
            self.cycle.__class__ = OneWriteCycle

    def on_message_complete(self) -> None:
        if self._declined_head is None:  # else: llhttp "completed" the head it will re-parse
            super().on_message_complete()
            if self.cycle is not None:
                # The whole body is buffered: the push endpoint reads it without waiting, so it
                # needs no body timer (see CallbackEndpoint).
                self.cycle.scope[BODY_COMPLETE] = True  # type: ignore[literal-required]
                if self._deferred is not None and self._deferred[0] is self.cycle:
                    cycle, app = self._deferred
                    self._deferred = None
                    self._push_fast(cycle, app)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if (
            self._fast is None
            or cycle.scope["path"] not in self._fast_paths
            or cycle.scope["method"] != "POST"
            or cycle.waiting_for_100_continue
            # A queued push whose turn came (from on_response_complete) before its body was
            # whole: nothing would start it if no more bytes came, so the endpoint reads it,
            # under its body timeout, as before the fast path.
            or (cycle.more_body and not self._parsing)
        ):
            super()._start_asgi_task(cycle, app)
        elif cycle.more_body:
            self._deferred = (cycle, app)  # decided once the bytes received so far are parsed
        else:
            self._push_fast(cycle, app)  # a pipelined push, received whole while it waited

    def _push_fast(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Queue a whole push through the endpoint's ``accept``, or run the endpoint on it."""
        started = time.perf_counter()
        try:
            accepted = self._fast.accept(cycle.scope, bytes(cycle.body))
        except Exception:  # a bug of ours: the endpoint still answers (and logs its own)
            log.exception("the fast path failed on a push; the endpoint answers it instead")
            accepted = None
        if accepted is None:  # not a valid push: the endpoint answers why, and keeps it
            super()._start_asgi_task(cycle, app)
            return
        call_id, future = accepted
        future.add_done_callback(functools.partial(self._answer_fast, cycle, app, started, call_id))

    def _answer_fast(
        self,
        cycle: RequestResponseCycle,
        app: Any,
        started: float,
        call_id: str,
        future: asyncio.Future[Any],
    ) -> None:
        """Write the answer to a fast-path push, as uvicorn would for the endpoint's."""
        try:
            answer = self._fast.answered(cycle.scope, started, call_id, future)
        except Exception:  # a bug of ours: the push must still be answered (it is stored)
            log.exception("answering push %s failed; the endpoint answers it instead", call_id)
            answer = None
        if answer is None:  # the writer raised: the endpoint tries once more and answers
            if cycle.disconnected:
                # The cycle's receive() would say http.disconnect before the body, and the
                # endpoint would return without storing or quarantining it; the sender left
                # after the push was submitted, so handle it as the endpoint did then.
                app = functools.partial(_with_body, app, bytes(cycle.body))
            super()._start_asgi_task(cycle, app)
            return
        if cycle.disconnected:
            return  # stored all the same; there is nobody to answer
        status, headers, payload = answer
        cycle.response_started = cycle.response_complete = True
        # Not keep-alive: HTTP/1.0, the sender's "Connection: close", or shutdown.
        close = not cycle.keep_alive
        cycle.transport.write(_response(status, cycle.default_headers, headers, payload, close))
        if not cycle.keep_alive:
            cycle.transport.close()
        if cycle.flow.write_paused:
            # The sender is not reading its answers: as uvicorn's send (which awaits drain),
            # serve (and read) its next request only once the transport can take more.
            task = self.loop.create_task(self._on_response_when_writable(cycle))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)
            return
        cycle.on_response()

    @staticmethod
    async def _on_response_when_writable(cycle: RequestResponseCycle) -> None:
        await cycle.flow.drain()  # connection_lost resumes writing, so this always ends
        cycle.on_response()

    def on_response_complete(self) -> None:
        answered_all = not self.pipeline
        super().on_response_complete()
        if answered_all and self._pending_refusal is not None and not self.transport.is_closing():
            self._send_refusal(self._pending_refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _new_parser(self) -> httptools.HttpRequestParser:
        """A parser like the one uvicorn makes for each connection."""
        parser = httptools.HttpRequestParser(self)
        parser.set_dangerous_leniencies(lenient_data_after_close=True)
        return parser

    def _head_without_upgrade(self) -> bytes:
        """The request line and headers llhttp just parsed, minus every ``Upgrade`` header.

        Built from the parsed fields, not sliced from the bytes received (which may have come
        in several segments): llhttp has validated every name and value, so the rebuilt head
        frames the body exactly as the original did (same ``Content-Length``, same
        ``Transfer-Encoding``), and without ``Upgrade`` llhttp does not skip the body.
        """
        version = self.parser.get_http_version().encode()
        parts = [self.parser.get_method(), b" ", self.url, b" HTTP/", version, b"\r\n"]
        for name, value in self.headers:
            if name != b"upgrade":
                parts += [name, b": ", value, b"\r\n"]
        parts.append(b"\r\n")
        return b"".join(parts)

    def _upgrade_not_declined(self) -> None:
        """llhttp stopped for an upgrade we did not decline: WebSocket (uvicorn's) or CONNECT."""
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        else:
            self._unparseable = True  # CONNECT: the rest is tunnel data; its answer closes

    def _refuse_unparseable(self, reason: str) -> None:
        """Answer bytes that are not a request with a 400, after the answers due before it.

        The parser cannot go on after an error, so the connection ends with this answer. If the
        request being received is the one that broke (its headers or chunked body are
        malformed), it is the one refused: its app never gets a complete body, so nothing of it
        is stored. If the bytes came after a complete request (typically: its
        ``Content-Length`` was shorter than its body), that request and any before it are
        answered first, each with its real result, and the 400 follows them.
        """
        self._unparseable = True
        self._declined_head = None
        self._deferred = None  # its app is not run: a broken request is answered 400 below
        self._disarm_header_timer()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        log.warning("invalid HTTP request from %s: %s; closing the connection", client, reason)
        broken = f"not a valid HTTP/1.1 request: {reason}"
        cycle = self.cycle
        if cycle is None:  # the connection's first request is the broken one
            self._send_refusal(self._refusal(broken))
        elif cycle.more_body:  # the request being received is the broken one
            queued = [entry for entry in self.pipeline if entry[0] is cycle]
            if queued:  # not started: drop it, and refuse it after the earlier answers
                self.pipeline.remove(queued[0])
                self._pending_refusal = self._refusal(broken)
            elif cycle.response_started and not cycle.response_complete:
                self.transport.close()  # its answer is under way: nothing can follow it
            else:  # its app sees a disconnect instead of the rest of its body, or answered
                self._send_refusal(self._refusal(broken))
        else:  # the bytes follow a complete request: it (and any before it) is answered first
            refusal = self._refusal(
                "the bytes after the previous request are not a valid HTTP/1.1 request:"
                f" {reason} (was that request's Content-Length shorter than its body? it is"
                " answered as its Content-Length framed it)",
                cycle.scope["headers"],
            )
            if cycle.response_complete:  # the newest request is answered, so all are
                self._send_refusal(refusal)
            else:
                self._pending_refusal = refusal

    def _refusal(
        self, detail: str, previous_headers: list[tuple[bytes, bytes]] | None = None
    ) -> bytes:
        """A complete ``400 invalid_http`` response, JSON like every other error, that closes."""
        fields = [
            {
                "field": "Content-Length",
                "value": value.decode("latin-1"),
                "expected": "the body's length in bytes: the bytes after the body must start"
                " the next request",
            }
            for name, value in previous_headers or []
            if name == b"content-length"
        ]
        payload = msgspec.json.encode({"error": "invalid_http", "detail": detail, "fields": fields})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(payload)),
        ]
        return _response(400, self.server_state.default_headers, headers, payload, close=True)

    def _send_refusal(self, response: bytes) -> None:
        self._pending_refusal = None
        self._unset_keepalive_if_required()
        self.transport.write(response)
        self.transport.close()

    def _arm_header_timer(self, seconds: float) -> None:
        self._header_timer = self.loop.call_later(seconds, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        self._head_since = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        since = self._head_since
        if since is None:
            return  # no header block pending: the next request's first byte arms it again
        left = since + self.header_timeout - self.loop.time()
        if left > 0:
            self._arm_header_timer(left)  # a later request's header block: its own deadline
        elif self.cycle is None or self.cycle.response_complete:
            self.transport.close()


def _response(
    status: int,
    default_headers: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    payload: bytes,
    close: bool,
) -> bytes:
    """A whole response of known length, head and body, as uvicorn writes one: its status
    line, the server's default headers, then ``headers``, and ``Connection: close`` if asked."""
    head = [STATUS_LINE[status]]
    for name, value in (*default_headers, *headers):
        head += [name, b": ", value, b"\r\n"]
    if close:
        head.append(b"connection: close\r\n")
    return b"".join([*head, b"\r\n", payload])


async def _with_body(app: Any, body: bytes, scope: Any, _receive: Any, send: Any) -> None:
    """``app`` on a request whose whole body is ``body``, whatever became of the connection."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    await app(scope, receive, send)
