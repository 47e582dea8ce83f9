"""The push endpoint: NXCC POSTs one call log; a 200 means it is committed and synced.

This is the hot path, so it is a plain ASGI app (no request objects, no dependency injection)
mounted on every configured callback path. The order of checks is the contract:

1. token (constant time); a missing or wrong one is 401 and nothing is kept or logged of it;
2. size: a declared or streamed body over the limit is 413 and is not read further;
3. media type ``application/json`` (parameters such as ``;charset=UTF-8`` allowed), else 415;
4. JSON object, else 400; field types, else 422 naming every bad field;
5. store through the group-commit writer, and answer 200 only after the commit.

From step 2 on the sender has proved it knows the token, so whatever we refuse is quarantined
first (body, headers minus the token, reason): nothing a real sender sent is lost.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import msgspec

from cdrhub import cdr
from cdrhub.errors import (
    BadJson,
    BodyTimeout,
    BodyTooLarge,
    CdrhubError,
    FieldProblem,
    ForbiddenAddress,
    InvalidRecord,
    MethodNotAllowed,
    StoreFailed,
    StoreUnavailable,
    TooManyAuthFailures,
    Unauthorized,
    UnsupportedMediaType,
)
from cdrhub.ingest.guard import Guard
from cdrhub.ingest.protocol import BODY_COMPLETE
from cdrhub.ingest.writer import BatchWriter
from cdrhub.store import Push, Rejected

log = logging.getLogger("cdrhub.ingest")  # the name operators filter logs by; kept across moves

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Headers never copied into the quarantine: they carry secrets.
_SECRET_HEADERS = frozenset({"token", "authorization", "cookie", "proxy-authorization"})
_JSON_HEADERS = [(b"content-type", b"application/json")]
_PREFIX = f"{os.getpid():x}"  # request ids are unique per process: <pid>-<counter>
_REQUESTS = itertools.count(1)
_T = TypeVar("_T")


class TokenCheck:
    """Accepts any of the configured tokens, comparing each in constant time."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens if t]
        if not self._tokens:
            raise ValueError("at least one token is needed to accept pushes")

    def __call__(self, presented: bytes | None) -> bool:
        if presented is None:
            return False
        ok = False
        for token in self._tokens:  # no early exit: timing says nothing about which matched
            ok |= hmac.compare_digest(presented, token)
        return ok


class _Disconnected(Exception):
    """The sender went away before its body was complete; there is nobody to answer."""


class CallbackEndpoint:
    """ASGI app for ``POST <callback path>``; see the module docstring."""

    def __init__(
        self,
        tokens: TokenCheck,
        writer: Callable[[], BatchWriter],
        *,
        guard: Guard | None = None,
        max_body_bytes: int,
        body_timeout: float = 30.0,
        count: Callable[[str, float], None] = lambda _result, _seconds: None,
        log_pushes: bool = True,
    ) -> None:
        self._answered_level = logging.INFO if log_pushes else logging.DEBUG
        self._body_timeout = body_timeout
        self._tokens = tokens
        self._guard = guard or Guard([], [])
        self._writer = writer
        self._max = max_body_bytes
        self._count = count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        extra: dict[str, str] = {}
        try:
            status, body = await self._handle(scope, receive)
        except _Disconnected:
            return
        except CdrhubError as error:
            status, body, extra = error.status, error.body(), error.headers
        except Exception:
            # A bug of ours: log it, and answer the documented shape (NXCC retries a 500).
            log.exception("push failed unexpectedly")
            status = 500
            body = {"error": "internal_error", "detail": "see the server log", "fields": []}
        headers, payload = self._answer(scope, started, status, body, extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    # -- the fast path: a valid push answered from a callback, without a task ----------------

    def accept(self, scope: Scope, body: bytes) -> tuple[str, asyncio.Future[Any]] | None:
        """Queue a push whose whole body has arrived, if every check passes; else None.

        The protocol calls this instead of running the app when a push's body arrived with
        its head (nearly every push): the checks are the same as :meth:`_handle`'s, in the
        same order, and the push goes to the same writer. Only the happy path is taken here;
        for anything else (None) the protocol runs this endpoint as an ordinary ASGI app on
        the same request, which answers the error and quarantines the body exactly as always.
        Skipping the task, the ASGI messages and their coroutines saves the event loop about
        a third of its work per push (issue 15's profile, BENCHMARKS.md "Fifth look").
        """
        if scope["method"] != "POST":
            return None
        if not self._guard.allowed(self._guard.client(scope)):
            return None
        token, content_type, _ = _push_headers(scope)
        if not self._tokens(token) or len(body) > self._max or not _is_json(content_type):
            return None
        try:
            call_id = cdr.check(body)
        except Exception:  # refused (or a bug of ours): the full endpoint answers and keeps it
            return None
        try:
            writer = self._writer()
        except RuntimeError:  # the app has not started: the endpoint answers that (500)
            return None
        return call_id, writer.enqueue(Push(None, body))

    def answered(
        self, scope: Scope, started: float, call_id: str, future: asyncio.Future[Any]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes] | None:
        """The answer to a push :meth:`accept` queued, once its future is done; None when the
        writer raised, so that the full endpoint handles the push (and the error) instead."""
        if future.cancelled() or future.exception() is not None:
            return None
        body = {"ok": True, "callId": call_id, "result": future.result()}
        headers, payload = self._answer(scope, started, 200, body, {})
        return 200, headers, payload

    def _answer(
        self,
        scope: Scope,
        started: float,
        status: int,
        body: dict[str, Any],
        extra: dict[str, str],
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """Log and count the outcome; the answer's headers and JSON body."""
        request_id = f"{_PREFIX}-{next(_REQUESTS):x}"
        elapsed = time.perf_counter() - started
        result = body.get("result") or body.get("error") or "unknown"
        call_id = body.get("callId")
        level = self._answered_level if status == 200 else logging.WARNING
        if log.isEnabledFor(level):  # one line per push; skip building it when not shown
            log.log(
                level,
                "push %s %s%s (%.1f ms)",
                status,
                result,
                f" call {call_id}" if call_id else "",
                elapsed * 1e3,
                extra={
                    "request_id": request_id,
                    "status": status,
                    "result": result,
                    "call_id": call_id,
                    "client": self._guard.client(scope),
                    "latency_ms": round(elapsed * 1e3, 2),
                },
            )
        payload = msgspec.json.encode(body)
        headers = [
            *_JSON_HEADERS,
            (b"content-length", str(len(payload)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        if status in (408, 413):
            headers.append((b"connection", b"close"))  # the rest of the body is never read
        elif status == 405:
            headers.append((b"allow", b"POST"))
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        self._count(result, elapsed)
        return headers, payload

    async def _handle(self, scope: Scope, receive: Receive) -> tuple[int, dict[str, Any]]:
        if scope["method"] != "POST":
            raise MethodNotAllowed("push call logs with POST")
        address = self._guard.client(scope)
        if not self._guard.allowed(address):
            log.debug("address %s not in CDRHUB_ALLOWED_IPS", address)
            raise ForbiddenAddress(f"{address} may not push here (CDRHUB_ALLOWED_IPS)")
        token, content_type, length = _push_headers(scope)
        if not self._tokens(token):
            wait = self._guard.retry_after(address)
            self._guard.failed(address)
            log.debug("%s token from %s", "no" if token is None else "invalid", address)
            if wait is not None:
                raise TooManyAuthFailures(
                    f"too many wrong tokens from {address}; retry in {wait} s",
                    headers={"retry-after": str(wait)},
                )
            raise Unauthorized(
                "missing `token` header" if token is None else "invalid `token` header",
                [cdr_problem("token", "a token configured in CDRHUB_TOKENS (or data/token)")],
            )
        chunks: list[bytes] = []
        try:
            if scope.get(BODY_COMPLETE):
                # cdrhub's server has the whole body already (nearly every push arrives in one
                # segment): reading it cannot wait, so no timer is needed (about 3 us a push).
                body, complete = await self._read(receive, length, chunks)
            else:
                reading = self._read(receive, length, chunks)
                body, complete = await _within(self._body_timeout, reading)
        except TimeoutError:
            # What a slow sender managed to send is authenticated data: keep it, say why.
            error = BodyTimeout(f"the body did not arrive within {self._body_timeout:g} s")
            await self._quarantine(scope, b"".join(chunks), False, error)
            raise error from None
        try:
            if not complete:
                raise BodyTooLarge(
                    f"body is over the {self._max}-byte limit (CDRHUB_MAX_BODY_BYTES)"
                )
            if not _is_json(content_type):
                shown = content_type.decode("latin-1") if content_type else "none"
                raise UnsupportedMediaType(f"Content-Type must be application/json, got {shown}")
            # The verdict and the callId only: the record is built where it is stored (the
            # writer thread, or the journal's applier, which reads the body again anyway).
            call_id = cdr.check(body)
        except (BodyTooLarge, UnsupportedMediaType, BadJson, InvalidRecord) as error:
            await self._quarantine(scope, body, complete, error)
            raise
        except Exception as exc:
            # The parser refuses with BadJson or InvalidRecord, nothing else; anything else is
            # a bug of ours. The sender proved its token: keep the body for replay after the
            # fix, and answer 500 so NXCC retries meanwhile.
            log.error("reading a push failed unexpectedly", exc_info=exc)
            error = CdrhubError("the call could not be read; see the server log")
            await self._quarantine(scope, body, complete, error)
            raise error from None
        try:
            outcome = await self._writer().submit(Push(None, body))
        except StoreUnavailable:
            raise
        except Exception as exc:
            # A valid push the database refused: a bug of ours, not the sender's. Keep it for
            # replay after the fix, and answer 500 so NXCC retries meanwhile.
            log.error("storing call %s failed", call_id, exc_info=exc)
            error = StoreFailed("the call could not be stored; see the server log")
            await self._quarantine(scope, body, True, error)
            raise error from None
        return 200, {"ok": True, "callId": call_id, "result": outcome}

    async def _read(
        self, receive: Receive, declared: bytes | None, chunks: list[bytes]
    ) -> tuple[bytes, bool]:
        """Read the body up to the limit into ``chunks``; (bytes, False) when it was too big."""
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            return b"", False
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max:
                chunks.append(chunk[: self._max - (size - len(chunk))])
                return b"".join(chunks), False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _quarantine(
        self, scope: Scope, body: bytes, complete: bool, error: CdrhubError
    ) -> None:
        call_id = _call_id_of(body) if complete else None
        rejected = Rejected(
            body=body,
            status=error.status,
            reason=error.code,
            detail=error.body(),
            headers=[
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in scope["headers"]
                if k.decode("latin-1") not in _SECRET_HEADERS
            ],
            body_complete=complete,
            path=scope["path"],
            remote_addr=self._guard.client(scope),
            call_id=call_id,
        )
        # If even this cannot be stored the writer raises StoreUnavailable, and the sender gets
        # a 503 (and retries) instead of a 4xx for a body nobody kept.
        entry = await self._writer().submit(rejected)
        if entry:
            log.warning(
                "push quarantined as #%s (%s, call %s): %s",
                entry,
                error.code,
                call_id,
                error.detail,
            )
            error.detail = f"{error.detail} (kept in quarantine as #{entry})"
        else:
            log.warning("push refused (%s, call %s), spooled for quarantine", error.code, call_id)
            error.detail = f"{error.detail} (kept for quarantine; the database is unavailable)"


async def _within(seconds: float, reading: Coroutine[Any, Any, _T]) -> _T:
    """``reading``'s result, or TimeoutError once ``seconds`` have passed.

    What ``asyncio.timeout`` does, for the one await every push makes, at a fraction of its
    cost (a timer handle instead of a context manager rescheduling one): it was 15 us of each
    push (issue 15's profile), and nearly every body is complete before it is first read.
    """
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await reading
    except asyncio.CancelledError:
        if not expired or task.uncancel() > 0:
            raise  # cancelled by someone else (shutdown): not ours to turn into a timeout
        raise TimeoutError from None
    finally:
        timer.cancel()


def cdr_problem(field: str, expected: str) -> FieldProblem:
    """A problem with a header, whose value is never echoed (it may be a secret)."""
    return FieldProblem(field, None, expected)


def _push_headers(scope: Scope) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The headers a push is checked by: ``token``, ``Content-Type``, ``Content-Length``."""
    token = content_type = length = None
    for name, value in scope["headers"]:
        if name == b"token":
            token = value
        elif name == b"content-type":
            content_type = value
        elif name == b"content-length":
            length = value
    return token, content_type, length


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


def _call_id_of(body: bytes) -> str | None:
    """Best effort: the callId of a refused body, so quarantine entries can be found by call."""
    try:
        value = msgspec.json.decode(body).get("callId")
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError, AttributeError):
        return None  # not a JSON object: it has no callId to index by
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
