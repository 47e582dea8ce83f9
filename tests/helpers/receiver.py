"""A real HTTP server that receives forwarded events, for the forwarding tests.

It runs in a thread on a loopback port, keeps every request (headers and exact body), and
answers what the test sets: a status per request (a callable), optional headers, the body of
every answer, or a hang.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """What the server received, and how it answers: ``answer(n, body)`` gives the status
    and headers for the ``n``-th request (from 0)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.answer: Callable[[int, bytes], tuple[int, dict[str, str]]] = lambda n, body: (200, {})
        self.hang_seconds = 0.0
        self.body = b"ok"
        self.url = ""

    def ok(self) -> list[Received]:
        """The requests answered with a 2xx."""
        with self.lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until ``count`` requests were answered 2xx; those requests."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.ok()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.ok())} of {count} deliveries: {self.requests}")


@contextmanager
def receiving() -> Iterator[Receiver]:
    """Run a receiver for the duration of the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            with receiver.lock:
                number = len(receiver.requests)
                status, headers = receiver.answer(number, body)
                receiver.requests.append(
                    Received(
                        self.path, {k.lower(): v for k, v in self.headers.items()}, body, status
                    )
                )
            if receiver.hang_seconds:
                time.sleep(receiver.hang_seconds)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            body = receiver.body
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
