"""The ceiling: the least an ASGI receiver can do on uvicorn, to measure cdrhub against.

Reads the whole body, checks the ``token`` header in constant time and answers 200: no
parsing, no storage. Whatever cdrhub achieves is compared with this, measured in the same run.

    BENCH_TOKEN=t uvicorn bench.ceiling:app --http httptools --loop uvloop --no-access-log
"""

from __future__ import annotations

import hmac
import os
from typing import Any

TOKEN = os.environ.get("BENCH_TOKEN", "bench-token").encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    token = b""
    for name, value in scope["headers"]:
        if name == b"token":
            token = value
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    status = 200 if hmac.compare_digest(token, TOKEN) else 401
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
