"""A real ``cdrhub serve`` process, pushed to by real clients of other stacks (curl, the JDK)."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cdrhub.cdr import VENDOR_EXAMPLE
from cdrhub.store import Store
from tests.helpers import TOKEN, Server

VENDOR_BODY = json.dumps(VENDOR_EXAMPLE, ensure_ascii=False)


def _curl(url: str, body: str, *headers: str) -> tuple[int, str]:
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", url]
    for header in headers:
        args += ["-H", header]
    done = subprocess.run(
        [*args, "--data-binary", body], capture_output=True, text=True, timeout=30, check=True
    )
    text, _, status = done.stdout.rpartition("\n")
    return int(status), text


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_vendor_example_twice_stores_one_call(
    serve: Callable[..., Server], store: Store
) -> None:
    """The issue's 'done when': the vendor's curl, twice, stores the call once."""
    server = serve()
    url = f"{server.url}/cc/callback"
    headers = (f"token: {TOKEN}", "Content-Type: application/json")
    assert _curl(url, VENDOR_BODY, *headers)[0] == 200
    assert _curl(url, VENDOR_BODY, *headers)[0] == 200
    assert store.count_calls() == 1
    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None and row["delivery_count"] == 2
    assert _curl(url, VENDOR_BODY, "Content-Type: application/json")[0] == 401


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    "extra",
    [
        ("Transfer-Encoding: chunked",),
        ("Expect: 100-continue",),
        ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAAQAAP__"),
    ],
    ids=["chunked", "expect-100-continue", "h2c-upgrade-headers"],
)
def test_real_sender_quirks_keep_the_body(
    serve: Callable[..., Server], store: Store, extra: tuple[str, ...]
) -> None:
    """Chunked bodies, Expect: 100-continue and h2c upgrade offers all arrive whole."""
    server = serve()
    body = json.dumps({**VENDOR_EXAMPLE, "other": "长" * 2000}, ensure_ascii=False)
    status, text = _curl(
        f"{server.url}/callback",
        body,
        f"Token: {TOKEN}",
        "Content-Type: application/json;charset=UTF-8",
        *extra,
    )
    assert status == 200, text
    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None and row["other"] == "长" * 2000


def test_keep_alive_connection_carries_many_pushes(
    serve: Callable[..., Server], store: Store
) -> None:
    """One persistent connection, many pushes (as a pooled Java client sends them)."""
    server = serve()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for i in range(30):
            body = json.dumps({**VENDOR_EXAMPLE, "callId": f"ka-{i}"}).encode()
            connection.request(
                "POST",
                "/cc/callback",
                body=body,
                headers={"token": TOKEN, "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
    finally:
        connection.close()
    assert store.count_calls() == 30


JAVA_SENDER = Path(__file__).with_name("java") / "Sender.java"


@pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")
def test_jdk_http_client_with_default_settings(
    serve: Callable[..., Server], store: Store, tmp_path: Path
) -> None:
    """java.net.http.HttpClient as shipped (h2c offer; plain, chunked, 100-continue): all 200."""
    server = serve()
    source = JAVA_SENDER
    payload = tmp_path / "push.json"
    payload.write_text(
        json.dumps(
            {**VENDOR_EXAMPLE, "callId": "CALLID", "intent": "转人工-成功"}, ensure_ascii=False
        ),
        encoding="utf-8",
    )
    done = subprocess.run(
        ["java", str(source), f"{server.url}/cc/callback", str(payload), TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    statuses = [line.split(" ", 1)[0] for line in done.stdout.splitlines()]
    assert statuses == ["200"] * 11, done.stdout
    assert store.count_calls() == 11
    row = store.get_call("java-chunked")
    assert row is not None and row["intent"] == "转人工-成功"


def _push_on(connection: http.client.HTTPConnection, call_id: str) -> int:
    """POST the vendor example as ``call_id`` on a kept-alive connection; the status."""
    body = json.dumps({**VENDOR_EXAMPLE, "callId": call_id})
    connection.request(
        "POST",
        "/cc/callback",
        body=body,
        headers={"token": TOKEN, "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    response.read()
    return response.status


def _in_threads(target: Callable[[int], None], count: int) -> None:
    """Run ``target(0..count-1)`` concurrently and wait for all of them."""
    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_several_receivers_on_one_database_never_duplicate(
    serve: Callable[..., Server], store: Store
) -> None:
    """Three processes get the same callIds at once (NXCC retries): one row per call, no errors."""
    servers = [serve() for _ in range(3)]
    call_ids = [f"race-{i}" for i in range(40)]
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        connections = [http.client.HTTPConnection("127.0.0.1", s.port, timeout=30) for s in servers]
        order = call_ids * 2
        rng.shuffle(order)
        for call_id in order:
            status = _push_on(rng.choice(connections), call_id)
            with lock:
                statuses[status] += 1
                sent[call_id] += 1
        for connection in connections:
            connection.close()

    _in_threads(sender, 6)
    assert statuses == Counter({200: 480})
    assert store.count_calls() == 40
    for call_id in call_ids:
        row = store.get_call(call_id)
        assert row is not None
        assert row["delivery_count"] == sent[call_id]
        assert row["version_count"] == 1
        assert len(store.raw_versions(call_id)) == 1


def test_several_workers_share_one_database_without_errors(
    serve: Callable[..., Server], store: Store
) -> None:
    """`--workers 2` (CDRHUB_WORKERS): concurrent duplicate pushes, all 200, one row each."""
    server = serve(CDRHUB_WORKERS="2")
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def sender(seed: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in range(40):
            status = _push_on(connection, f"w-{(i * 7 + seed) % 40}")
            with lock:
                statuses[status] += 1
        connection.close()

    _in_threads(sender, 8)
    assert statuses == Counter({200: 320})
    assert store.count_calls() == 40
    total = sum(store.get_call(f"w-{i}")["delivery_count"] for i in range(40))  # type: ignore[index]
    assert total == 320


def test_sigterm_lets_an_in_flight_push_finish(serve: Callable[..., Server], store: Store) -> None:
    """A push still arriving when SIGTERM comes is answered 200, stored, and the exit is 0."""
    import signal
    import socket
    import time

    server = serve()
    body = json.dumps({**VENDOR_EXAMPLE, "callId": "in-flight"}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST /cc/callback HTTP/1.1\r\nHost: x\r\ntoken: {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:20])
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    sock.sendall(body[20:])
    reply = sock.recv(4096).decode()
    sock.close()
    assert reply.startswith("HTTP/1.1 200"), reply
    assert server.process.wait(timeout=20) == 0
    row = store.get_call("in-flight")
    assert row is not None and row["delivery_count"] == 1


class TestForwardedFor:
    """The sender's address on a real server: uvicorn's own X-Forwarded-For handling (which
    believes loopback by default) runs only there, so a TestClient could not show it. Every
    request here comes from 127.0.0.1 and says it is someone else."""

    PROXY = "127.0.0.1/32"

    @staticmethod
    def _push(server: Server, token: str, forwarded: list[str], body: bytes | None = None) -> int:
        headers = [("token", token), ("Content-Type", "application/json")]
        headers += [("X-Forwarded-For", value) for value in forwarded]
        content = body if body is not None else VENDOR_BODY.encode()
        return httpx.post(f"{server.url}/cc/callback", content=content, headers=headers).status_code

    @staticmethod
    def _clients(server: Server) -> list[str]:
        """The ``client`` of every push line the server logged (JSON log format)."""
        text = server.log.read_text().splitlines()
        lines = [json.loads(line) for line in text if line.startswith("{")]
        return [line["client"] for line in lines if "client" in line]

    def test_without_trusted_proxies_the_header_changes_nothing(
        self, serve: Callable[..., Server], store: Store
    ) -> None:
        """Rotating X-Forwarded-For meets the token brake all the same, and the quarantine
        and the log record the peer, not what the header claims."""
        server = serve(CDRHUB_AUTH_FAILURE_LIMIT="5", CDRHUB_LOG_FORMAT="json")
        statuses = [self._push(server, "wrong", [f"203.0.113.{i}"]) for i in range(8)]
        assert statuses == [401] * 5 + [429] * 3
        assert self._push(server, TOKEN, ["198.51.100.66"], b"{not json") == 400
        [entry] = store.quarantined()
        assert entry["remote_addr"] == "127.0.0.1"
        assert set(self._clients(server)) == {"127.0.0.1"}

    def test_with_a_trusted_proxy_only_the_address_it_saw_counts(
        self, serve: Callable[..., Server], store: Store
    ) -> None:
        """Behind our proxy each sender has its own brake; what a sender writes left of the
        proxy's entry is ignored (right to left, trusted hops skipped)."""
        server = serve(
            CDRHUB_AUTH_FAILURE_LIMIT="5",
            CDRHUB_LOG_FORMAT="json",
            CDRHUB_TRUSTED_PROXIES=self.PROXY,
        )
        assert [self._push(server, "wrong", [f"203.0.113.{i}"]) for i in range(8)] == [401] * 8
        spoofed = [self._push(server, "wrong", [f"6.6.6.{i}, 192.0.2.7"]) for i in range(8)]
        assert spoofed == [401] * 5 + [429] * 3
        # Two header lines are one list; a trusted hop on the right is skipped.
        assert self._push(server, "wrong", ["6.6.6.6", "192.0.2.7, 127.0.0.1"]) == 429
        assert self._push(server, "wrong", ["192.0.2.8"]) == 401
        assert self._push(server, TOKEN, ["1.1.1.1, [2001:DB8::9]:4711"], b"{not json") == 400
        [entry] = store.quarantined()
        assert entry["remote_addr"] == "2001:db8::9"
        logged = self._clients(server)
        assert "2001:db8::9" in logged and "192.0.2.7" in logged and "6.6.6.0" not in logged

    @pytest.mark.parametrize("trusted", [False, True], ids=["no-proxy", "trusted-proxy"])
    def test_the_allowlist_admits_only_the_address_that_connected(
        self, serve: Callable[..., Server], store: Store, trusted: bool
    ) -> None:
        """CDRHUB_ALLOWED_IPS=10.9.9.9: a header naming it lets a push in only when our own
        proxy wrote that entry."""
        env = {"CDRHUB_ALLOWED_IPS": "10.9.9.9"}
        if trusted:
            env["CDRHUB_TRUSTED_PROXIES"] = self.PROXY
        server = serve(**env)
        assert self._push(server, TOKEN, []) == 403  # loopback itself is not allowed
        assert self._push(server, TOKEN, ["10.9.9.9, 6.6.6.6"]) == 403
        assert self._push(server, TOKEN, ["10.9.9.9", "6.6.6.6"]) == 403
        assert self._push(server, TOKEN, ["10.9.9.9, not-an-address"]) == 403
        assert store.count_calls() == 0
        expected = 200 if trusted else 403
        assert self._push(server, TOKEN, ["10.9.9.9"]) == expected
        assert self._push(server, TOKEN, ["6.6.6.6, 10.9.9.9, 127.0.0.1"]) == expected
        assert store.count_calls() == (1 if trusted else 0)


def test_a_running_server_has_not_loaded_what_only_some_features_need(tmp_path: Path) -> None:
    """Alembic (schema upgrades), Apprise (alert targets), aiohttp (webhooks), XlsxWriter
    (spreadsheets) and httpx (NXCC pulls, `cdrhub push`) are loaded by the feature that
    needs them, not by every `cdrhub serve`: together they were over 60 MB of its memory,
    and the push path's goal is 100 MB. SQLAlchemy's ORM (6 MB) is needed by none, NumPy
    (15 MB) only by reports (the background snapshot refresh does without it)."""
    script = (
        "import asyncio, sys\n"
        "import cdrhub.cli  # what `cdrhub serve` imports first\n"
        "from cdrhub.app import create_app\n"
        "from cdrhub.settings import Settings\n"
        "app = create_app(Settings())\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        await asyncio.sleep(0.5)\n"
        "asyncio.run(main())\n"
        "print(sorted(({m.split('.')[0] for m in sys.modules} | set(sys.modules))"
        " & {'alembic', 'apprise', 'aiohttp', 'xlsxwriter', 'paho', 'httpx', 'sqlalchemy.orm',"
        " 'numpy'}))\n"
    )
    url = f"sqlite:///{tmp_path}/c.db"
    env = {**os.environ, "CDRHUB_DATABASE_URL": url, "CDRHUB_TOKENS": TOKEN}
    env["CDRHUB_DATA_DIR"] = str(tmp_path / "data")
    subprocess.run(
        [sys.executable, "-m", "cdrhub", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    # With CDRHUB_AUTO_MIGRATE on a database already current, the upgrade has nothing to do:
    # that must not load Alembic either.
    env["CDRHUB_AUTO_MIGRATE"] = "true"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]
