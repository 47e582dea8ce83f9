"""What the forwarding tests share: a push through the real endpoint, and waiting for a result."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.helpers import TOKEN


def push_call(client: TestClient, body: dict[str, Any] | bytes) -> str:
    """POST a call log as NXCC does; assert the 200 and return its result (created...)."""
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    answer = client.post(
        "/cc/callback",
        content=content,
        headers={"token": TOKEN, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["result"])


def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true; that value (else an AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: last {value!r}")
        time.sleep(0.05)
