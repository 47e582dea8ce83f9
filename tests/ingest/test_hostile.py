"""Hostile and broken senders against a real server: never a 500, never a hang, nothing lost."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdrhub.cdr import VENDOR_EXAMPLE
from cdrhub.store import Store
from tests.helpers import TOKEN, Server


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _head(length: int | None = None, chunked: bool = False) -> bytes:
    lines = [
        "POST /cc/callback HTTP/1.1",
        "Host: cdrhub",
        f"token: {TOKEN}",
        "Content-Type: application/json",
    ]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_all(sock: socket.socket) -> str:
    """Everything the server sends until it closes the connection."""
    parts = []
    while data := sock.recv(65536):
        parts.append(data)
    sock.close()
    return b"".join(parts).decode(errors="replace")


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_silent_and_slow_header_connections_are_closed(serve: Callable[..., Server]) -> None:
    """A connection that sends nothing, or headers a byte at a time, is closed (slowloris)."""
    server = serve(CDRHUB_HEADER_TIMEOUT_SECONDS="1")
    silent = _connect(server)
    slow = _connect(server)
    slow.sendall(b"POST /cc/callback HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    assert _closed_within(silent, 5)
    for _ in range(3):
        try:
            slow.sendall(b"X-Drip: 1\r\n")
        except OSError:
            break
        time.sleep(0.4)
    assert _closed_within(slow, 5)
    assert time.monotonic() - started < 5
    assert (
        httpx.post(
            f"{server.url}/cc/callback", json=VENDOR_EXAMPLE, headers={"token": TOKEN}
        ).status_code
        == 200
    )


def test_a_body_that_stalls_gets_408_and_is_kept(
    serve: Callable[..., Server], store: Store
) -> None:
    """Headers promise 200 bytes, 20 arrive, then nothing: 408, and the 20 bytes quarantined."""
    server = serve(CDRHUB_BODY_TIMEOUT_SECONDS="1")
    sock = _connect(server)
    sock.sendall(_head(length=200) + b'{"callId":"stall-1",')
    reply = _read_all(sock)
    assert reply.startswith("HTTP/1.1 408"), reply
    assert '"error":"body_timeout"' in reply
    [entry] = store.quarantined()
    assert entry["reason"] == "body_timeout" and entry["body"] == b'{"callId":"stall-1",'
    assert entry["body_complete"] is False


def test_a_sender_that_disconnects_mid_body_stores_nothing(
    serve: Callable[..., Server], store: Store
) -> None:
    """A body cut off by a disconnect is not a call (nobody is waiting for a 200)."""
    server = serve()
    sock = _connect(server)
    sock.sendall(_head(length=500) + b'{"callId":"cut-1","direction":')
    sock.close()
    time.sleep(0.3)
    assert (
        httpx.post(
            f"{server.url}/cc/callback", json={"callId": "after-cut"}, headers={"token": TOKEN}
        ).status_code
        == 200
    )
    assert store.get_call("cut-1") is None and store.get_call("after-cut") is not None


def test_a_100_mb_body_is_refused_without_being_read(
    serve: Callable[..., Server], store: Store
) -> None:
    """A 100 MB chunked body gets 413 after the first MiB; the server reads no further.

    The answer is read while the body is still being sent, so it is seen before the server's
    close resets the connection: a server that sent nothing, or something else, fails here.
    """
    limit = 1024 * 1024
    server = serve(CDRHUB_MAX_BODY_BYTES=str(limit))
    sock = _connect(server)
    received = bytearray()

    def read() -> None:
        try:
            while data := sock.recv(65536):
                received.extend(data)
        except OSError:
            pass  # reset once the server has closed: what it sent before is in `received`

    reader = threading.Thread(target=read)
    reader.start()
    sock.sendall(_head(chunked=True))
    chunk = b"%x\r\n%s\r\n" % (limit, b"x" * limit)
    sent = 0
    try:
        for _ in range(100):
            sock.sendall(chunk)
            sent += 1
    except OSError:
        pass  # the server closed the connection: exactly what should happen
    reader.join(timeout=15)
    sock.close()
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), bytes(received[:300])
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "body_too_large"
    assert sent < 100  # the server stopped reading, so the rest could not be sent
    [entry] = store.quarantined()
    assert (entry["status"], entry["reason"]) == (413, "body_too_large")
    assert entry["body_complete"] is False
    assert bytes(entry["body"]) == b"x" * limit  # the first MiB of the body, as sent


def test_many_idle_connections_do_not_block_pushes(serve: Callable[..., Server]) -> None:
    """Hundreds of open, idle connections; a real push still gets its 200 promptly."""
    server = serve()
    idle = [_connect(server) for _ in range(300)]
    try:
        started = time.monotonic()
        response = httpx.post(
            f"{server.url}/cc/callback", json=VENDOR_EXAMPLE, headers={"token": TOKEN}, timeout=10
        )
        assert response.status_code == 200
        assert time.monotonic() - started < 2
    finally:
        for sock in idle:
            sock.close()


def test_duplicate_keys_and_huge_numbers(serve: Callable[..., Server], store: Store) -> None:
    """Duplicate keys take the last value (raw body kept as sent); huge numbers are a 422."""
    server = serve()
    url = f"{server.url}/cc/callback"
    headers = {"token": TOKEN, "Content-Type": "application/json"}
    raw = b'{"callId":"dup-1","direction":0,"direction":1}'
    assert httpx.post(url, content=raw, headers=headers).status_code == 200
    row = store.get_call("dup-1")
    assert row is not None and row["direction"] == 1
    assert store.raw_versions("dup-1")[0]["body"] == raw
    huge = b'{"callId":"big-1","startTime":1' + b"0" * 400 + b"}"
    response = httpx.post(url, content=huge, headers=headers)
    assert response.status_code == 422 and response.json()["fields"][0]["field"] == "startTime"


json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(
    [
        "callId",
        "direction",
        "answered",
        "startTime",
        "endTime",
        "callDuration",
        "hangupBy",
        "totalCustomerPrice",
        "agentName",
        "other",
        "intent",
        "unknownField",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.dictionaries(field_names, json_values, max_size=8) | json_values)
def test_any_json_gets_200_or_a_documented_4xx(client: Any, body: Any) -> None:
    """Whatever JSON arrives: 200, or a 4xx with the documented error body; never a 500."""
    response = client.post(
        "/cc/callback",
        content=json.dumps(body).encode(),
        headers={"token": TOKEN, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400, 422), response.text
    data = response.json()
    if response.status_code == 200:
        assert data["ok"] is True and data["result"] in ("created", "duplicate", "updated", "stale")
    else:
        assert set(data) == {"error", "detail", "fields"} and data["detail"]
