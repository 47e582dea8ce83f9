"""The push endpoint, driven through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cdrhub import cdr
from cdrhub.cdr import VENDOR_EXAMPLE
from cdrhub.settings import Settings
from cdrhub.store import Push as StorePush
from cdrhub.store import Store
from tests.helpers import OTHER_TOKEN, TOKEN, Push, Server


def test_vendor_example_is_stored_field_for_field(push: Push, store: Store) -> None:
    """The seed's example push answers 200 and every field lands in its typed column."""
    response = push(VENDOR_EXAMPLE)
    assert response.status_code == 200
    assert response.json() == {"ok": True, "callId": VENDOR_EXAMPLE["callId"], "result": "created"}

    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None
    assert row["agent_name"] == "agent@example.com"
    assert row["answer_time"] == datetime(2023, 8, 7, 1, 36, 32, tzinfo=UTC)
    assert row["answer_time_ms"] == 1691372192000
    assert row["start_time"] == datetime(2023, 8, 7, 1, 36, 31, tzinfo=UTC)
    assert row["start_time_ms"] == 1691372191000
    assert row["end_time_ms"] == 1691372213000
    assert row["call_duration"] == 7
    assert row["callee"] == "1001@10.0.0.1:5060"
    assert row["caller"] == "85235757581"
    assert row["direction"] == 2
    assert row["intent"] == "转人工-成功"
    assert row["order_id"] == "ORDER_ID"
    assert row["other"] == "OTHER"
    assert row["task_id"] == "1688363452814331904"
    assert row["answered"] is None and row["ring_time"] is None and row["hangup_by"] is None
    assert row["delivery_count"] == 1 and row["version_count"] == 1
    assert row["source"] == "push"
    raw = store.raw_versions(VENDOR_EXAMPLE["callId"])
    assert [json.loads(r["body"]) for r in raw] == [VENDOR_EXAMPLE]


def test_identical_retry_only_counts_a_delivery(push: Push, store: Store) -> None:
    """A retried push (same content) answers 200 and never becomes a second record."""
    assert push(VENDOR_EXAMPLE).json()["result"] == "created"
    # Same content, different key order and whitespace: still the same call log.
    reordered = json.dumps(dict(reversed(list(VENDOR_EXAMPLE.items()))), indent=2)
    second = push(reordered)
    assert second.status_code == 200
    assert second.json()["result"] == "duplicate"
    assert store.count_calls() == 1
    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None and row["delivery_count"] == 2 and row["version_count"] == 1
    versions = store.raw_versions(VENDOR_EXAMPLE["callId"])
    assert len(versions) == 1 and versions[0]["delivery_count"] == 2


def test_corrected_push_wins_and_keeps_the_earlier_version(push: Push, store: Store) -> None:
    """New content for a known callId replaces the row; the old body stays a raw version."""
    push(VENDOR_EXAMPLE)
    corrected = {**VENDOR_EXAMPLE, "callDuration": 21, "hangupBy": 1}
    response = push(corrected)
    assert response.json()["result"] == "updated"
    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None
    assert row["call_duration"] == 21 and row["hangup_by"] == 1
    assert row["delivery_count"] == 2 and row["version_count"] == 2
    bodies = [json.loads(r["body"]) for r in store.raw_versions(VENDOR_EXAMPLE["callId"])]
    assert bodies == [VENDOR_EXAMPLE, corrected]


def test_late_retry_of_an_old_version_does_not_undo_a_correction(push: Push, store: Store) -> None:
    """A stale retry is counted, but the newest content stays current."""
    push(VENDOR_EXAMPLE)
    push({**VENDOR_EXAMPLE, "callDuration": 21})
    late = push(VENDOR_EXAMPLE)
    assert late.status_code == 200 and late.json()["result"] == "stale"
    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None and row["call_duration"] == 21 and row["delivery_count"] == 3


def test_unknown_fields_are_kept_in_the_raw_body(push: Push, store: Store) -> None:
    """Fields newer platform versions add do not fail the push and are not thrown away."""
    body = {**VENDOR_EXAMPLE, "callId": "u-1", "satisfaction": {"score": 5}, "newField": "x"}
    assert push(body).status_code == 200
    raw = json.loads(store.raw_versions("u-1")[0]["body"])
    assert raw["satisfaction"] == {"score": 5} and raw["newField"] == "x"


def test_chinese_text_round_trips(push: Push, store: Store) -> None:
    """Non-ASCII text is stored and read back exactly, in columns and in the raw body."""
    body = {
        "callId": "zh-1",
        "agentNickName": "客服小王",
        "hangupReason": "用户挂断",
        "intent": "转人工-成功",
        "other": "备注：😀",
    }
    assert push(body, content_type="application/json;charset=UTF-8").status_code == 200
    row = store.get_call("zh-1")
    assert row is not None
    assert (row["agent_nick_name"], row["hangup_reason"], row["intent"], row["other"]) == (
        "客服小王",
        "用户挂断",
        "转人工-成功",
        "备注：😀",
    )
    assert json.loads(store.raw_versions("zh-1")[0]["body"].decode("utf-8")) == body


def test_sloppy_but_meaningful_values_are_accepted(push: Push, store: Store) -> None:
    """null/""/missing mean absent, numbers as strings are numbers, 0 times mean absent."""
    body = {
        "callId": 123456789,
        "direction": "1",
        "answered": "false",
        "answerTime": 0,
        "startTime": "1691372191000",
        "callDuration": "",
        "hangupBy": None,
        "hangupCode": "16",
        "totalCustomerPrice": "0.35",
        "taskId": 1688363452814331904,
    }
    assert push(body).status_code == 200
    row = store.get_call("123456789")
    assert row is not None
    assert row["direction"] == 1 and row["answered"] is False
    assert row["answer_time"] is None and row["start_time_ms"] == 1691372191000
    assert row["call_duration"] is None and row["hangup_by"] is None
    assert row["hangup_code"] == 16 and row["total_customer_price"] == pytest.approx(0.35)
    assert row["task_id"] == "1688363452814331904"


def test_every_configured_path_and_token_is_accepted(push: Push, store: Store) -> None:
    """Both callback paths serve pushes, and old and new token work together (rotation)."""
    assert push({"callId": "p1"}, path="/callback").status_code == 200
    assert push({"callId": "p2"}, token=OTHER_TOKEN).status_code == 200
    assert store.count_calls() == 2


def test_header_name_case_does_not_matter(push: Push) -> None:
    """`Token:` is the same header as `token:`."""
    response = push({"callId": "case-1"}, token=None, headers={"Token": TOKEN})
    assert response.status_code == 200


BIG = "x" * (70 * 1024)

# (name, body, token, content type, status, error code, fields named, quarantined)
BAD_PUSHES: list[tuple[str, Any, str | None, str | None, int, str, list[str], bool]] = [
    ("no token", VENDOR_EXAMPLE, None, "application/json", 401, "unauthorized", ["token"], False),
    (
        "wrong token",
        VENDOR_EXAMPLE,
        "nope",
        "application/json",
        401,
        "unauthorized",
        ["token"],
        False,
    ),
    ("empty token", VENDOR_EXAMPLE, "", "application/json", 401, "unauthorized", ["token"], False),
    (
        "too large",
        {"callId": "big", "other": BIG},
        TOKEN,
        "application/json",
        413,
        "body_too_large",
        [],
        True,
    ),
    (
        "form type",
        VENDOR_EXAMPLE,
        TOKEN,
        "application/x-www-form-urlencoded",
        415,
        "unsupported_media_type",
        [],
        True,
    ),
    ("no type", VENDOR_EXAMPLE, TOKEN, None, 415, "unsupported_media_type", [], True),
    ("not json", "callId=1", TOKEN, "application/json", 400, "bad_json", [], True),
    ("invalid utf-8", b'{"callId":"\xff"}', TOKEN, "application/json", 400, "bad_json", [], True),
    ("array", [VENDOR_EXAMPLE], TOKEN, "application/json", 400, "bad_json", [], True),
    (
        "no callId",
        {"direction": 0},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["callId"],
        True,
    ),
    (
        "empty callId",
        {"callId": " "},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["callId"],
        True,
    ),
    (
        "maybe answered",
        {"callId": "c", "answered": "maybe"},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["answered"],
        True,
    ),
    (
        "direction 7",
        {"callId": "c", "direction": 7},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["direction"],
        True,
    ),
    (
        "text timestamp",
        {"callId": "c", "startTime": "yesterday", "endTime": True},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["endTime", "startTime"],
        True,
    ),
    (
        "negative duration",
        {"callId": "c", "ringDuration": -3},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["ringDuration"],
        True,
    ),
    (
        "huge number",
        {"callId": "c", "hangupCode": 10**30},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["hangupCode"],
        True,
    ),
    (
        "object agent",
        {"callId": "c", "agentName": {"a": 1}},
        TOKEN,
        "application/json",
        422,
        "invalid_record",
        ["agentName"],
        True,
    ),
]


@pytest.mark.parametrize(
    ("body", "token", "content_type", "status", "code", "fields", "quarantined"),
    [case[1:] for case in BAD_PUSHES],
    ids=[case[0] for case in BAD_PUSHES],
)
def test_bad_pushes_get_a_clear_error_and_lose_nothing(
    push: Push,
    store: Store,
    body: Any,
    token: str | None,
    content_type: str | None,
    status: int,
    code: str,
    fields: list[str],
    quarantined: bool,
) -> None:
    """Each refusal has its status and JSON error; authenticated bodies go to quarantine."""
    response = push(body, token=token, content_type=content_type)
    assert response.status_code == status
    error = response.json()
    assert error["error"] == code
    assert error["detail"]
    assert sorted(f["field"] for f in error["fields"]) == fields
    for problem in error["fields"]:
        assert problem["expected"]
    assert "Traceback" not in response.text
    assert store.count_calls() == 0
    entries = store.quarantined()
    assert len(entries) == (1 if quarantined else 0)
    if quarantined:
        entry = entries[0]
        assert entry["status"] == status and entry["reason"] == code
        assert f"#{entry['id']}" in error["detail"]
        headers = dict(json.loads(entry["headers"]))
        assert "token" not in {k.lower() for k in headers}
        assert TOKEN not in entry["headers"]
        sent = _as_sent(body)
        if status == 413:  # its Content-Length is over the limit: not read at all, marked cut
            assert len(sent) > 64 * 1024
            assert entry["body_complete"] is False and bytes(entry["body"]) == b""
        else:
            assert entry["body_complete"] is True
            assert bytes(entry["body"]) == sent


def _as_sent(body: Any) -> bytes:
    """The bytes the ``push`` fixture sends for ``body`` (JSON as ``json.dumps`` writes it)."""
    if isinstance(body, dict | list):
        return json.dumps(body, ensure_ascii=False).encode()
    return body.encode() if isinstance(body, str) else bytes(body)


def test_422_names_field_value_and_expectation(push: Push) -> None:
    """The error says which field, what it was and what would be accepted."""
    response = push({"callId": "c", "direction": 7, "answered": "maybe"})
    fields = {f["field"]: f for f in response.json()["fields"]}
    assert fields["direction"]["value"] == 7
    assert "0 (inbound)" in fields["direction"]["expected"]
    assert fields["answered"] == {
        "field": "answered",
        "value": "maybe",
        "expected": "true or false",
    }


def test_get_on_the_callback_path_is_405(push: Push, client: Any) -> None:
    """Only POST pushes; other methods say so."""
    response = client.get("/cc/callback")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"] == "method_not_allowed"


def test_unknown_paths_use_the_same_error_shape(client: Any) -> None:
    """404s from the framework have the documented JSON body too."""
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found", "fields": []}


def test_tokens_never_reach_the_log(push: Push, caplog: pytest.LogCaptureFixture) -> None:
    """Neither a valid nor a wrong token is logged, whatever the outcome."""
    caplog.set_level(logging.DEBUG)
    push(VENDOR_EXAMPLE)
    push({"callId": "c", "direction": 9})
    push(VENDOR_EXAMPLE, token="wrong-secret-value")
    text = caplog.text
    assert "push 200 created" in text and "push 401 unauthorized" in text
    for secret in (TOKEN, OTHER_TOKEN, "wrong-secret-value"):
        assert secret not in text


def test_health_and_readiness(client: Any, push: Push) -> None:
    """/healthz says the process is up; /readyz checks the database, schema, spool, pushes."""
    assert client.get("/healthz").json() == {"status": "ok"}
    push(VENDOR_EXAMPLE)
    push(VENDOR_EXAMPLE, token="nope")
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert (checks["database"], checks["schema"]) == ("ok", "ok")
    assert checks["spool"] == {"pending": 0, "oldest_age_seconds": None}
    assert checks["pushes"]["last_accepted"] is not None
    assert checks["pushes"]["last_rejected_reason"] == "unauthorized"
    assert checks["pushes"]["silent"] is False


def test_streamed_body_over_the_limit_is_cut_and_quarantined(client: Any, store: Store) -> None:
    """A chunked body with no Content-Length is read only up to the limit, then refused."""

    def chunks() -> Any:
        yield b'{"callId":"stream-1","other":"'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(
        "/cc/callback",
        content=chunks(),
        headers={"token": TOKEN, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    [entry] = store.quarantined()
    assert entry["body_complete"] is False
    assert entry["body"].startswith(b'{"callId":"stream-1"')
    assert len(entry["body"]) == 64 * 1024
    assert store.count_calls() == 0


def test_metrics_count_pushes_by_result_without_secrets(push: Push, client: Any) -> None:
    """/metrics counts each result and error code, and never shows a token or a callId."""
    push(VENDOR_EXAMPLE)
    push(VENDOR_EXAMPLE)
    push(VENDOR_EXAMPLE, token="wrong-secret-value")
    push({"callId": "m-1", "direction": 9})
    text = client.get("/metrics").text
    assert 'cdrhub_pushes_total{result="created"} 1.0' in text
    assert 'cdrhub_pushes_total{result="duplicate"} 1.0' in text
    assert 'cdrhub_pushes_total{result="unauthorized"} 1.0' in text
    assert 'cdrhub_pushes_total{result="invalid_record"} 1.0' in text
    assert "cdrhub_commit_items_count" in text and "cdrhub_spool_pending 0.0" in text
    for secret in (TOKEN, OTHER_TOKEN, "wrong-secret-value", VENDOR_EXAMPLE["callId"], "m-1"):
        assert secret not in text


def _app_client(settings: Settings, **changes: Any) -> TestClient:
    from cdrhub.app import create_app

    return TestClient(create_app(settings.model_copy(update=changes)))


def test_addresses_outside_the_allowlist_get_403(settings: Settings, store: Store) -> None:
    """With CDRHUB_ALLOWED_IPS set, other senders are refused before their token is read."""
    with _app_client(settings, allowed_ips=["203.0.113.0/24"]) as client:
        response = client.post("/cc/callback", json=VENDOR_EXAMPLE, headers={"token": TOKEN})
    assert response.status_code == 403 and response.json()["error"] == "forbidden_address"
    assert store.count_calls() == 0


def test_allowed_addresses_push_as_usual(serve: Any, store: Store) -> None:
    """A real server with loopback allowed accepts pushes from loopback."""
    import httpx

    server = serve(CDRHUB_ALLOWED_IPS="127.0.0.0/8,::1")
    response = httpx.post(
        f"{server.url}/cc/callback", json=VENDOR_EXAMPLE, headers={"token": TOKEN}
    )
    assert response.status_code == 200 and store.count_calls() == 1


def test_forwarded_for_is_believed_only_from_trusted_proxies(settings: Settings) -> None:
    """X-Forwarded-For decides the sender only when the peer is a configured proxy."""
    from cdrhub.ingest.guard import Guard, networks

    guard = Guard(networks(["198.51.100.7/32"]), networks(["10.0.0.0/8"]))
    forwarded = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.1.1.1")]
    via_proxy = {"client": ("10.0.0.2", 5000), "headers": forwarded}
    direct = {"client": ("192.0.2.9", 5000), "headers": forwarded}
    assert guard.client(via_proxy) == "198.51.100.7" and guard.allowed("198.51.100.7")
    assert guard.client(direct) == "192.0.2.9" and not guard.allowed("192.0.2.9")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.9", ["6.6.6.6"], "192.0.2.9"),  # not our proxy: the header is anyone's
        ("10.0.0.2", [], "10.0.0.2"),  # our proxy, nothing forwarded: the proxy itself
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),  # two lines are one list
        ("10.0.0.2", ["198.51.100.7", "10.3.3.3"], "198.51.100.7"),  # a trusted hop skipped
        ("10.0.0.2", ["6.6.6.6, junk"], "10.0.0.2"),  # not an address: stop at who passed it
        ("10.0.0.2", ["6.6.6.6, junk, 10.3.3.3"], "10.3.3.3"),
        ("10.0.0.2", ["6.6.6.6, 10.4.4.4, 10.3.3.3"], "6.6.6.6"),  # all trusted up to there
        ("10.0.0.2", [" , 198.51.100.7 ,"], "198.51.100.7"),
        ("10.0.0.2", ["198.51.100.7:4711"], "198.51.100.7"),
        ("10.0.0.2", ["[2001:DB8::7]:4711"], "2001:db8::7"),
        ("10.0.0.2", ["::FFFF:198.51.100.7"], "198.51.100.7"),
        ("::ffff:10.0.0.2", ["198.51.100.7"], "198.51.100.7"),  # a dual-stack listener's peer
        ("2001:DB8::1", [], "2001:db8::1"),
    ],
)
def test_the_sender_address_is_read_right_to_left_and_written_one_way(
    peer: str, forwarded: list[str], expected: str
) -> None:
    """One spelling per address, so no brake or allowlist is passed by writing it another
    way; right to left through our proxies only, as each appended what it saw."""
    from cdrhub.ingest import client_address, networks

    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope = {"client": (peer, 5000), "headers": [(b"host", b"x"), *headers]}
    assert client_address(scope, networks(["10.0.0.0/8"])) == expected


def test_repeated_wrong_tokens_are_braked_but_valid_ones_pass(settings: Settings) -> None:
    """After the limit, wrong tokens get 429 with Retry-After; the right token still gets 200."""
    with _app_client(settings, auth_failure_limit=3) as client:
        statuses = [
            client.post("/cc/callback", json=VENDOR_EXAMPLE, headers={"token": f"guess-{i}"})
            for i in range(5)
        ]
        assert [r.status_code for r in statuses] == [401, 401, 401, 429, 429]
        assert int(statuses[-1].headers["retry-after"]) > 0
        assert statuses[-1].json()["error"] == "too_many_auth_failures"
        valid = client.post("/cc/callback", json=VENDOR_EXAMPLE, headers={"token": TOKEN})
        assert valid.status_code == 200


def test_silence_during_business_hours_marks_the_service_degraded() -> None:
    """No push for the alert time within business hours is 'silent'; outside them it is not."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from cdrhub.ops.activity import Activity

    activity = Activity(
        alert_minutes=10,
        business_hours="09:00-18:00",
        business_days=["mon", "tue", "wed", "thu", "fri"],
        timezone="Asia/Shanghai",
    )
    zone = ZoneInfo("Asia/Shanghai")
    tuesday_noon = datetime(2026, 11, 24, 12, 0, tzinfo=zone).timestamp()
    sunday_noon = datetime(2026, 11, 22, 12, 0, tzinfo=zone).timestamp()
    tuesday_night = datetime(2026, 11, 24, 23, 0, tzinfo=zone).timestamp()
    activity.last_accepted = tuesday_noon - 11 * 60
    assert activity.silent(tuesday_noon) is True
    activity.last_accepted = tuesday_noon - 9 * 60
    assert activity.silent(tuesday_noon) is False
    activity.last_accepted = sunday_noon - 3600
    assert activity.silent(sunday_noon) is False
    activity.last_accepted = tuesday_night - 3600
    assert activity.silent(tuesday_night) is False
    activity.record("invalid_record")
    assert activity.status()["last_rejected_reason"] == "invalid_record"


def test_metrics_can_require_their_own_token(settings: Settings) -> None:
    """With CDRHUB_METRICS_TOKEN set, /metrics needs it as a bearer token."""
    from pydantic import SecretStr

    with _app_client(settings, metrics_token=SecretStr("scrape-secret-123")) as client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
        assert ok.status_code == 200 and "cdrhub_push_seconds_bucket" in ok.text
        assert "cdrhub_silent 0.0" in ok.text


def test_a_line_a_push_at_info_only_when_asked_for_and_a_summary_a_minute(
    serve: Callable[..., Server],
) -> None:
    """By default a push answered 200 is logged at debug level (a line a push costs about a
    tenth of the throughput) and refusals as warnings; CDRHUB_LOG_PUSHES=true logs each 200
    at info."""
    quiet, verbose = (
        serve(CDRHUB_LOG_LEVEL="info"),
        serve(CDRHUB_LOG_LEVEL="info", CDRHUB_LOG_PUSHES="true"),
    )
    for server, call_id in ((quiet, "quiet-1"), (verbose, "verbose-1")):
        url = f"{server.url}/cc/callback"
        assert httpx.post(url, json={"callId": call_id}, headers={"token": TOKEN}).is_success
        refused = httpx.post(url, json={"callId": "x", "direction": 9}, headers={"token": TOKEN})
        assert refused.status_code == 422
    quiet.stop()
    verbose.stop()
    assert "push 200 created call quiet-1" not in quiet.log.read_text()
    assert "WARNING cdrhub.ingest: push 422 invalid_record" in quiet.log.read_text()
    assert "INFO cdrhub.ingest: push 200 created call verbose-1" in verbose.log.read_text()


def test_the_summary_line_counts_what_was_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The minute's summary says how many pushes arrived and how each was answered, most
    frequent first, and says nothing for a minute without pushes."""
    import asyncio

    from cdrhub.app import _summarise_pushes
    from cdrhub.ops import Activity

    activity = Activity()
    for result in ["created"] * 1200 + ["duplicate"] * 3 + ["invalid_record"]:
        activity.record(result)
    caplog.set_level(logging.INFO, logger="cdrhub.ingest")

    async def a_few_periods() -> None:
        task = asyncio.create_task(_summarise_pushes(activity, every=0.05))
        await asyncio.sleep(0.18)
        task.cancel()

    asyncio.run(a_few_periods())
    lines = [r.getMessage() for r in caplog.records if r.name == "cdrhub.ingest"]
    assert lines == [
        "1,204 pushes: 1,200 created, 3 duplicate, 1 invalid_record in the last 0.05 s"
    ]


def test_json_log_lines_carry_request_fields_but_no_phone_numbers(
    push: Push, caplog: pytest.LogCaptureFixture
) -> None:
    """CDRHUB_LOG_FORMAT=json: one object per push with request id, status, callId, latency."""
    from cdrhub.ops.logs import JsonFormatter

    caplog.set_level(logging.DEBUG, logger="cdrhub.ingest")
    response = push(VENDOR_EXAMPLE)
    [record] = [r for r in caplog.records if r.name == "cdrhub.ingest"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == response.headers["x-request-id"]
    assert (line["status"], line["result"]) == (200, "created")
    assert line["call_id"] == VENDOR_EXAMPLE["callId"] and line["latency_ms"] >= 0
    assert VENDOR_EXAMPLE["caller"] not in json.dumps(line)
    assert "1001@10.0.0.1" not in json.dumps(line)


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"k": [value]} if isinstance(value, int) else [value]
    return value


def _depth_body(call_id: str, levels: int) -> str:
    """A push whose unknown field is nested ``levels`` deep, as JSON text (json.dumps would
    refuse to write the deepest)."""
    head = f'{{"callId":"{call_id}","startTime":1691372191000,"extra":'
    return head + "[" * levels + "1" + "]" * levels + "}"


@pytest.mark.parametrize("levels", [64, 254, 300])
def test_nesting_readers_cannot_serialise_is_refused_and_kept(
    push: Push, store: Store, levels: int
) -> None:
    """Too deep to show back (the API's encoder stops near 255): a 422 naming the field, the
    body quarantined byte for byte, no call stored."""
    body = _depth_body("deep", levels)
    answer = push(body)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["fields"]
    assert problem["field"] == "extra" and "63 levels" in problem["expected"]
    [entry] = store.quarantined()
    assert bytes(entry["body"]) == body.encode() and entry["status"] == 422
    assert store.count_calls() == 0


def test_nesting_that_is_accepted_is_served_back(
    push: Push, api: Any, client: TestClient, store: Store
) -> None:
    """63 levels in an unknown field: stored, and the API shows the body as it came. A body
    kept before the limit (254 levels) is still shown, as its text, not a 500."""
    assert push(_depth_body("ok", 63)).status_code == 200
    answer = api("/api/calls/ok")
    assert answer.status_code == 200, answer.text
    expected = json.loads(_depth_body("x", 63))["extra"]
    assert answer.json()["raw_versions"][0]["body"]["extra"] == expected

    old = _depth_body("old", 300).encode()
    record = cdr.to_record({"callId": "old", "startTime": 1691372191000})
    store.write([StorePush(record, old)])
    answer = api("/api/calls/old")
    assert answer.status_code == 200, answer.text
    assert answer.json()["raw_versions"][0]["body"] == old.decode()
