"""A fake NXCC query API on loopback: a real HTTP server, for the backfill and reconcile tests.

It checks what the real one checks (the signature, over the exact body bytes, and the clock
skew), pages its records by start time, and can be told to misbehave: error codes, HTTP
errors, slow answers, rate limits, malformed bodies, other shapes of ``data``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY, SECRET = "demo-ak", "demo-secret"


def expected_sign(headers: dict[str, str], body: bytes) -> str:
    """The vendor's rule, written out independently of cdrhub.nxcc.sign."""
    signed = "&".join(f"{k}={headers[k]}" for k in ("accessKey", "action", "bizType", "ts"))
    text = f"{signed}&body={body.decode()}&accessSecret={SECRET}"
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the vendor's choice


@dataclass
class FakeNxcc:
    records: list[dict[str, Any]] = field(default_factory=list)
    #: Scripted answers used before any real one, in order: ("http", status), ("code", n, msg),
    #: ("slow", seconds), ("raw", text), ("retry_after", seconds).
    script: list[tuple[Any, ...]] = field(default_factory=list)
    #: How ``data`` is shaped: "bare" (a list), or the key holding the list ("list", ...).
    shape: str = "records"
    total_key: str | None = "total"
    #: What ``total`` counts: "records" (as expected), or "pages" (a gateway that says so).
    total_counts: str = "records"
    #: Which calls ``endTime`` (seconds) takes in, a rule the vendor does not document:
    #: "second" all of that second, "ms" only its first millisecond, "exclusive" none of it.
    end_rule: str = "second"
    #: A broken gateway that answers every ``page`` with the first one.
    ignore_page: bool = False
    fail_after: int | None = None  # every request after this many answers HTTP 500
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def answer(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        query = json.loads(body)
        self.requests.append(query)
        if self.script:
            step = self.script.pop(0)
            if step[0] == "http":
                return step[1], b'{"error":"scripted"}', {}
            if step[0] == "code":
                return 200, _json({"code": step[1], "msg": step[2], "data": None}), {}
            if step[0] == "slow":
                time.sleep(step[1])
            if step[0] == "raw":
                return 200, step[1].encode(), {}
            if step[0] == "retry_after":
                return 429, b"slow down", {"Retry-After": str(step[1])}
        if self.fail_after is not None and len(self.requests) > self.fail_after:
            return 500, b"down", {}
        if headers.get("sign") != expected_sign(headers, body):
            return 200, _json({"code": 10001, "msg": "sign error", "data": None}), {}
        if abs(int(headers["ts"]) - time.time() * 1000) > 60_000:
            return 200, _json({"code": 10002, "msg": "timestamp expired", "data": None}), {}
        if query["size"] > 100:
            return 200, _json({"code": 10003, "msg": "size too large", "data": None}), {}
        found = sorted(
            (r for r in self.records if self._asked(r, query)),
            key=lambda r: (r["startTime"], r["callId"]),
        )
        number = 1 if self.ignore_page else query["page"]
        page = found[(number - 1) * query["size"] : number * query["size"]]
        data: Any = page
        if self.shape != "bare":
            data = {self.shape: page}
            if self.total_key:
                total = len(found)
                data[self.total_key] = -(-total // 100) if self.total_counts == "pages" else total
        return 200, _json({"code": "0", "msg": "success", "data": data}), {}

    def _asked(self, record: dict[str, Any], query: dict[str, Any]) -> bool:
        start, low, end = record["startTime"], query["startTime"] * 1000, query["endTime"] * 1000
        if self.end_rule == "second":
            return low <= start <= end + 999
        if self.end_rule == "ms":
            return low <= start <= end
        return low <= start < end


def _json(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate, which only an escape can carry
        return json.dumps(value).encode()


@contextmanager
def running(fake: FakeNxcc) -> Iterator[FakeNxcc]:
    """Serve ``fake`` on a free loopback port for the duration."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            names = ("accessKey", "action", "bizType", "ts", "sign")
            headers = {n: self.headers.get(n, "") for n in names}  # case-insensitive lookup
            status, payload, extra = fake.answer(headers, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
