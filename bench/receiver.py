"""A fast webhook receiver for the forwarding benchmarks and the crash check.

A raw asyncio server (uvloop when installed, httptools to parse, keep-alive) that answers
each POST and records it: arrival time, the answer it gave, the ``webhook-id`` header and,
with ``--bodies``, the body. It can answer 500 or hang past the sender's timeout on a share
of requests, at random. Records are appended to ``--out`` every 0.2 s and at SIGTERM, so a
benchmark reads what arrived without slowing the receiver down.

    python bench/receiver.py --out /tmp/got.jsonl                       # always 200
    python bench/receiver.py --out /tmp/got.jsonl --fail 0.1 --hang 0.05 --hang-seconds 2

It prints ``READY <port>`` once it listens. Each line of ``--out`` is JSON:
``{"t": unix seconds, "status": 200|500|0 (hung), "id": "evt_...", "body": "..."}``.
One core of this machine takes about 10,000 requests/s with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import time
from pathlib import Path

import httptools

_REPLIES = {
    200: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
    500: b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail",
}


class Recorder:
    """What arrived, and what to answer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.fail = args.fail
        self.hang = args.hang
        self.hang_seconds = args.hang_seconds
        self.bodies = args.bodies
        self.random = random.Random(args.seed)
        self.out = Path(args.out)
        self.out.write_bytes(b"")
        self.records: list[tuple[float, int, str, bytes | None]] = []

    def answer(self) -> int:
        """200, 500, or 0 (hang) for the next request."""
        draw = self.random.random()
        if draw < self.fail:
            return 500
        if draw < self.fail + self.hang:
            return 0
        return 200

    def flush(self) -> None:
        records, self.records = self.records, []
        if not records:
            return
        lines = []
        for t, status, event_id, body in records:
            item: dict[str, object] = {"t": t, "status": status, "id": event_id}
            if body is not None:
                item["body"] = body.decode("utf-8", "replace")
            lines.append(json.dumps(item, ensure_ascii=False))
        with self.out.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")


class Connection(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.event_id = ""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.event_id = ""
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"webhook-id":
            self.event_id = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        recorder = self.recorder
        status = recorder.answer()
        body = b"".join(self.body) if recorder.bodies else None
        recorder.records.append((time.time(), status, self.event_id, body))
        if status == 0:
            asyncio.get_running_loop().call_later(recorder.hang_seconds, self._reply, 500)
        else:
            self._reply(status)

    def _reply(self, status: int) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_REPLIES[status])


async def serve(args: argparse.Namespace) -> None:
    recorder = Recorder(args)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(recorder), "127.0.0.1", args.port, backlog=1024
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
        recorder.flush()
    server.close()
    recorder.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--out", required=True, help="append one JSON line per request here")
    parser.add_argument("--fail", type=float, default=0.0, help="share answered 500")
    parser.add_argument("--hang", type=float, default=0.0, help="share left hanging")
    parser.add_argument("--hang-seconds", type=float, default=2.0, help="how long a hang lasts")
    parser.add_argument("--bodies", action="store_true", help="record the bodies too")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args))
    except ImportError:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
