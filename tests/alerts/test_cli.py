"""``cdrhub alert ...`` against a test database and a real receiver; secrets never printed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx

from cdrhub.alerts import rules
from cdrhub.settings import Settings
from cdrhub.store import Store
from tests.helpers import TOKEN, Server, free_port
from tests.helpers.cli import db_env, run
from tests.helpers.receiver import receiving

SECRET = "0123456789abcdefSECRETdingtalk"


def test_add_list_show_pause_resume_remove(settings: Settings, store: Store) -> None:
    env = db_env(settings)
    target = f"dingtalk://{SECRET}/?secret=SECxyz{SECRET}"
    added = run(
        "alert",
        "add",
        "low-sl",
        "service_level < 80%",
        "--window",
        "30m",
        "--min-calls",
        "20",
        "--notify",
        target,
        "--notify",
        "mailto://ops:hunter22@smtp.example.com",
        env=env,
    )
    assert added.exit_code == 0, added.output
    assert "Added low-sl: service_level < 80% over 30m" in added.output
    listed = run("alert", "list", env=env)
    assert listed.exit_code == 0
    shown = run("alert", "show", "low-sl", env=env)
    body = json.loads(shown.output)
    assert body["condition"] == "service_level < 80%"
    assert body["window_seconds"] == 1800 and body["min_calls"] == 20
    assert body["notify"] == ["dingtalk://***/?secret=***", "mailto://ops:***@smtp.example.com"]
    for output in (added.output, listed.output, shown.output):
        assert SECRET not in output and "hunter22" not in output
    assert "low-sl" in listed.output and "ok" in listed.output

    assert "low-sl is paused." in run("alert", "pause", "low-sl", env=env).output
    assert rules.require(store, "low-sl").state == "paused"
    assert "low-sl is active." in run("alert", "resume", "low-sl", env=env).output
    assert "Removed low-sl." in run("alert", "remove", "low-sl", env=env).output
    assert rules.find(store, "low-sl") is None


def test_bad_input_says_what_would_do(settings: Settings) -> None:
    env = db_env(settings)
    wrong_way = run("alert", "add", "x", "service_level > 80%", "--notify", "json://h/", env=env)
    assert wrong_way.exit_code == 1
    assert "service_level < 80%" in wrong_way.output
    assert "only when below" in wrong_way.output
    unknown = run("alert", "add", "x", "latency > 3", "--notify", "json://h/", env=env)
    assert "asa > 30s" in unknown.output and "no_pushes" in unknown.output
    target = run("alert", "add", "x", "no_pushes", "--notify", "nope://x", env=env)
    assert target.exit_code == 1 and "an Apprise URL" in target.output
    window = run(
        "alert", "add", "x", "no_pushes", "--window", "soon", "--notify", "json://h/", env=env
    )
    assert "a duration such as 30m" in window.output
    other = run(
        "alert", "add", "x", "no_pushes", "--min-calls", "3", "--notify", "json://h/", env=env
    )
    assert "service_level, abandon_rate or asa" in other.output
    missing = run("alert", "show", "nobody", env=env)
    assert missing.exit_code == 1 and "cdrhub alert list" in missing.output


def test_test_sends_now_and_prints_the_answer(settings: Settings) -> None:
    env = db_env(settings)
    with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        run(
            "alert",
            "add",
            "silence",
            "no_pushes",
            "--lang",
            "zh",
            "--notify",
            f"json://127.0.0.1:{port}/hook",
            env=env,
        )
        sent = run("alert", "test", "silence", env=env)
        assert sent.exit_code == 0, sent.output
        assert f"json://127.0.0.1:{port}/hook: delivered" in sent.output
        assert "Sent JSON" in sent.output
        got = receiver.wait_for(1)[0].json()
        assert got["title"] == "[cdrhub] 测试: silence"
        assert "距上次成功推送" in got["message"]
    down = f"json://127.0.0.1:{free_port()}/x"
    run("alert", "add", "down", "no_pushes", "--notify", down, env=env)
    failed = run("alert", "test", "down", env=env)
    assert failed.exit_code == 1
    assert "FAILED after 3 tries" in failed.output and "Connection error" in failed.output


def test_two_receivers_on_one_database_send_one_notification(
    serve: Callable[..., Server], settings: Settings, store: Store
) -> None:
    """Two real `cdrhub serve` processes evaluating every 0.2 s: only the lock holder sends."""
    with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        rules.add(
            store, "refused", "refused > 0", window="1h", targets=[f"json://127.0.0.1:{port}/hook"]
        )
        env = {"CDRHUB_ALERT_EVALUATE_SECONDS": "0.2", "CDRHUB_ALERT_REPEAT_MINUTES": "0"}
        first, second = serve(**env), serve(**env)
        answer = httpx.post(
            f"{second.url}/cc/callback",
            content=b"{broken",
            headers={"token": TOKEN, "content-type": "application/json"},
        )
        assert answer.status_code == 400  # quarantined: every process sees the refusal
        receiver.wait_for(1)
        time.sleep(3)  # ~15 evaluation rounds in each process
        assert len(receiver.requests) == 1
        assert receiver.requests[0].json()["title"] == "[cdrhub] FIRING: refused"
        assert first.process.poll() is None and second.process.poll() is None
    assert rules.require(store, "refused").firing
