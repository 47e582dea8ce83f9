"""Backfill, reconcile and import against a fake NXCC query API (a real HTTP server)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import func, select

from cdrhub import cdr
from cdrhub.cli import main
from cdrhub.pull import backfill, nxcc
from cdrhub.settings import Settings
from cdrhub.store import Push, Store
from cdrhub.store.schema import backfill_checkpoints, import_marks, raw_pushes
from tests.helpers.fake_nxcc import KEY, SECRET, FakeNxcc, running

BASE_S = 1_764_000_000 // 3600 * 3600  # an hour boundary, 2025-11-24


def _record(i: int, **extra: Any) -> dict[str, Any]:
    start = (BASE_S + (i * 37) % 36_000) * 1000 + i % 1000  # spread over ten hours
    return {
        "callId": f"call-{i:05d}",
        "direction": i % 3,
        "startTime": start,
        "endTime": start + 60_000,
        "answered": i % 2 == 0,
        "agentName": f"坐席{i % 7}",
        **extra,
    }


def _push(record: dict[str, Any]) -> Push:
    body = json.dumps(record, ensure_ascii=False).encode()
    return Push(cdr.parse(body), body)


@pytest.fixture
def fake() -> Iterator[FakeNxcc]:
    with running(FakeNxcc()) as server:
        yield server


def _client(fake: FakeNxcc, **kw: Any) -> nxcc.Client:
    kw = {"rate": 1000.0, "retries": 2, "backoff": 0.01, "timeout": 5.0} | kw
    return nxcc.Client(fake.url, KEY, kw.pop("secret", SECRET), **kw)


def test_signature_matches_the_vendors_test_vector() -> None:
    headers = {"accessKey": "demo-ak", "ts": "1732410000123", "bizType": "8", "action": "cc"}
    body = '{"startTime":1732406400,"endTime":1732410000,"page":1,"size":100}'
    assert nxcc.sign(headers, body, "demo-secret") == "db51c6415c64d4ca7dd1a48269074c9d"


def test_the_signed_body_is_the_body_sent(fake: FakeNxcc) -> None:
    """The fake recomputes the signature over the bytes it received: a mismatch is an error."""
    fake.records = [_record(1)]
    with _client(fake) as client:
        page = client.page(BASE_S, BASE_S + 36_000, 1)
    assert [r["callId"] for r in page.records] == ["call-00001"] and page.total == 1
    assert fake.requests == [
        {"startTime": BASE_S, "endTime": BASE_S + 36_000, "page": 1, "size": 100}
    ]


def test_reconcile_fetches_exactly_what_the_push_missed(store: Store, fake: FakeNxcc) -> None:
    """10,000 calls at NXCC, 9,000 of them pushed: reconcile stores the 1,000, then none."""
    fake.records = [_record(i) for i in range(10_000)]
    pushed = [r for i, r in enumerate(fake.records) if i % 10 != 3]
    for i in range(0, len(pushed), 1000):
        store.write([_push(r) for r in pushed[i : i + 1000]])
    with _client(fake) as client:
        hours = backfill.reconcile(store, client, BASE_S, BASE_S + 10 * 3600)
        assert len(hours) == 10
        assert sum(h.nxcc for h in hours) == 10_000 and sum(h.cdrhub for h in hours) == 9_000
        assert sum(h.missing for h in hours) == 1_000
        assert sum(h.stored.created for h in hours) == 1_000
        assert sum(h.different + h.stored.updated for h in hours) == 0
        # The 9,000 that arrived by push are compared, not written: no raw version, no mark.
        assert sum(h.stored.unchanged + h.stored.records for h in hours) == 1_000
        assert _count(store, raw_pushes) == 10_000 and _count(store, import_marks) == 0
        assert store.count_calls() == 10_000
        again = backfill.reconcile(store, client, BASE_S, BASE_S + 10 * 3600)
    assert sum(h.missing + h.different + h.stored.created + h.stored.updated for h in again) == 0
    assert sum(h.stored.records for h in again) == 0
    assert store.count_calls() == 10_000


def _count(store: Store, table: Any) -> int:
    with store.read_engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_pulled_record_that_differs_becomes_a_new_version(store: Store, fake: FakeNxcc) -> None:
    """Newest content wins, the pushed version stays, and the count of calls is unchanged."""
    pushed, same = _record(1, answered=False), _record(2)
    store.write([_push(pushed), _push(same)])
    fake.records = [pushed | {"answered": True, "intent": "有意向"}, same]
    with _client(fake) as client:
        hours = backfill.reconcile(store, client, BASE_S, BASE_S + 36_000)
    assert sum(h.different for h in hours) == 1 and sum(h.stored.updated for h in hours) == 1
    row = store.get_call("call-00001")
    assert row is not None and row["answered"] is True and row["intent"] == "有意向"
    assert [v["source"] for v in store.raw_versions("call-00001")] == ["push", "import"]
    assert store.count_calls() == 2
    # A backfill over the same range: both identical now, so only "seen by import" changes.
    with _client(fake) as client:
        result = backfill.backfill(store, client, BASE_S, BASE_S + 36_000)
    assert (result.tally.unchanged, result.tally.created, result.tally.updated) == (2, 0, 0)
    with store.read_engine.connect() as conn:
        marked = {r[0] for r in conn.execute(select(import_marks.c.call_id))}
        versions = conn.execute(select(func.count()).select_from(raw_pushes)).scalar_one()
    assert marked == {"call-00001", "call-00002"} and versions == 3


def test_an_interrupted_backfill_resumes_from_its_checkpoint(store: Store, fake: FakeNxcc) -> None:
    fake.records = [_record(i) for i in range(600)]
    fake.fail_after = 4  # four windows answered, then the gateway breaks
    with _client(fake, retries=0) as client, pytest.raises(nxcc.NxccError, match="HTTP 500"):
        backfill.backfill(store, client, BASE_S, BASE_S + 10 * 3600)
    assert 0 < store.count_calls() < 600
    with store.read_engine.connect() as conn:
        done = conn.execute(select(backfill_checkpoints.c.done_until)).scalar_one()
    assert done == BASE_S + 4 * 3600
    fake.fail_after, fake.requests = None, []
    with _client(fake) as client:
        result = backfill.backfill(store, client, BASE_S, BASE_S + 10 * 3600)
    assert store.count_calls() == 600
    assert min(q["startTime"] for q in fake.requests) == done  # finished windows not asked again
    assert result.windows_done == 10 and result.fetched == 600


def test_a_busy_window_is_split_until_its_pages_fit(store: Store, fake: FakeNxcc) -> None:
    fake.records = [_record(i) | {"startTime": BASE_S * 1000 + i * 7} for i in range(450)]
    fake.total_key = None  # no total: the client finds out by paging
    with _client(fake) as client:
        result = backfill.backfill(store, client, BASE_S, BASE_S + 3600, max_pages=2)
    assert result.fetched == 450 and store.count_calls() == 450
    assert any(q["endTime"] - q["startTime"] < 3599 for q in fake.requests)


def test_a_reported_total_too_big_splits_at_once(fake: FakeNxcc) -> None:
    """With a total over max_pages pages, the whole window is asked for only its first page."""
    fake.records = [_record(i) | {"startTime": BASE_S * 1000 + i * 7} for i in range(450)]
    with _client(fake) as client:
        assert len(backfill.pull(client, BASE_S, BASE_S + 3600, max_pages=2)) == 450
    whole = [q["page"] for q in fake.requests if q["endTime"] - q["startTime"] >= 3599]
    assert whole == [1]


def test_a_short_page_is_the_last(fake: FakeNxcc) -> None:
    """250 calls: pages of 100, 100 and 50, and no fourth request."""
    fake.records = [_record(i) | {"startTime": BASE_S * 1000 + i} for i in range(250)]
    with _client(fake) as client:
        assert len(backfill.pull(client, BASE_S, BASE_S + 3600)) == 250
    assert [q["page"] for q in fake.requests] == [1, 2, 3]


@pytest.mark.parametrize(
    ("shape", "total_key"),
    [
        ("bare", None),
        ("list", None),
        ("list", "totalRow"),
        ("records", "total"),
        ("rows", "totalCount"),
        ("items", None),
        ("data", "total"),
    ],
)
def test_every_documented_shape_of_data_is_read(
    fake: FakeNxcc, shape: str, total_key: str | None
) -> None:
    fake.records = [_record(i) for i in range(150)]
    fake.shape, fake.total_key = shape, total_key
    with _client(fake) as client:
        first = client.page(BASE_S, BASE_S + 36_000, 1)
        assert len(backfill.pull(client, BASE_S, BASE_S + 36_000)) == 150
    assert len(first.records) == 100 and first.total == (150 if total_key else None)


@pytest.mark.parametrize(
    ("data", "total"),
    [
        ({"list": None, "total": 0}, 0),
        ({"total": 0}, 0),
        ({"totalRow": "0"}, 0),
        ({"records": None}, None),
        ({"list": [], "total": 0}, 0),
        (None, None),
    ],
)
def test_an_empty_answer_is_an_empty_page(fake: FakeNxcc, data: Any, total: int | None) -> None:
    """No list, or a null one, with nothing to list: no calls, not an error."""
    fake.script = [("raw", json.dumps({"code": 0, "msg": "success", "data": data}))]
    with _client(fake) as client:
        page = client.page(BASE_S, BASE_S + 3600, 1)
    assert page.records == [] and page.total == total


@pytest.mark.parametrize("data", [{"list": None, "total": 3}, {"total": 5}, {}])
def test_a_missing_list_with_calls_to_list_is_an_error(fake: FakeNxcc, data: Any) -> None:
    fake.script = [("raw", json.dumps({"code": 0, "data": data}))]
    with _client(fake) as client, pytest.raises(nxcc.NxccError, match="no list of records"):
        client.page(BASE_S, BASE_S + 3600, 1)


@pytest.mark.parametrize("rule", ["second", "ms", "exclusive"])
def test_no_call_is_lost_or_doubled_at_a_window_edge(
    store: Store, fake: FakeNxcc, rule: str
) -> None:
    """Whichever way NXCC reads endTime, calls in an hour's last or first second land once."""
    fake.end_rule = rule
    edges = []
    for hour in range(1, 10):
        boundary = (BASE_S + hour * 3600) * 1000
        for offset in (-1000, -500, -1, 0, 1, 999):
            edges.append(
                _record(len(edges), startTime=boundary + offset) | {"callId": f"e{len(edges)}"}
            )
    fake.records = edges + [_record(i) for i in range(500)]
    with _client(fake) as client:
        result = backfill.backfill(store, client, BASE_S, BASE_S + 10 * 3600)
    assert result.fetched == len(fake.records) and result.tally.created == len(fake.records)
    assert store.count_calls() == len(fake.records)
    # Each window asks up to the next one's first second, so the rule does not matter.
    assert all(q["endTime"] - q["startTime"] == 3600 for q in fake.requests)


def test_a_gateway_that_ignores_page_is_an_error_not_a_loop(fake: FakeNxcc) -> None:
    fake.records = [_record(i) | {"startTime": BASE_S * 1000 + i} for i in range(150)]
    fake.ignore_page, fake.total_key = True, None
    with _client(fake) as client, pytest.raises(nxcc.NxccError, match="page 2 with the same calls"):
        backfill.pull(client, BASE_S, BASE_S + 3600)
    assert len(fake.requests) == 2


def test_a_total_that_counts_pages_does_not_stop_paging(
    fake: FakeNxcc, caplog: pytest.LogCaptureFixture
) -> None:
    """A gateway whose total is 4 (pages) for 350 calls: all 350 are read, and it is logged."""
    fake.records = [_record(i) | {"startTime": BASE_S * 1000 + i * 1000} for i in range(350)]
    fake.total_counts = "pages"
    with _client(fake) as client:
        assert len(backfill.pull(client, BASE_S, BASE_S + 3600)) == 350
    assert [q["page"] for q in fake.requests] == [1, 2, 3, 4]
    assert "reported a total of 4" in caplog.text and "held 350" in caplog.text


def test_pulled_directions_keep_the_push_encoding(store: Store, fake: FakeNxcc) -> None:
    """The query's direction filter is encoded 1/2/3 but never sent; records are 0/1/2 as pushed."""
    fake.records = [_record(i) | {"direction": i} for i in range(3)]
    with _client(fake) as client:
        backfill.reconcile(store, client, BASE_S, BASE_S + 36_000)
    stored = [store.get_call(f"call-{i:05d}") for i in range(3)]
    assert [row["direction"] for row in stored if row] == [0, 1, 2]
    assert all("direction" not in q for q in fake.requests)


def test_windows_follow_the_call_centers_hours() -> None:
    """In Asia/Kolkata (UTC+5:30) hours start at :30 UTC; in UTC at :00."""
    from zoneinfo import ZoneInfo

    kolkata = list(backfill.windows(BASE_S, BASE_S + 3 * 3600, zone=ZoneInfo("Asia/Kolkata")))
    assert kolkata == [
        (BASE_S, BASE_S + 1800),
        (BASE_S + 1800, BASE_S + 5400),
        (BASE_S + 5400, BASE_S + 9000),
        (BASE_S + 9000, BASE_S + 10800),
    ]
    assert list(backfill.windows(BASE_S, BASE_S + 7200)) == [
        (BASE_S, BASE_S + 3600),
        (BASE_S + 3600, BASE_S + 7200),
    ]


@pytest.mark.parametrize(
    ("script", "client_kw", "message"),
    [
        ([], {"secret": "wrong"}, "code 10001.*sign error.*ACCESS_SECRET.*clock"),
        ([("raw", "<html>gateway</html>")], {}, "not JSON: <html>gateway</html>"),
        ([("raw", '{"code":0,"data":"nope"}')], {}, 'no list of records.*"data": "nope"'),
        ([("raw", '{"oops":1}')], {}, "not \\{code, msg, data\\}"),
        ([("http", 404)], {}, "HTTP 404.*CDRHUB_NXCC_GATEWAY"),
        ([("http", 401)], {}, "HTTP 401.*ACCESS_KEY.*ACCESS_SECRET.*IP allow-list"),
        ([("http", 403)], {}, "HTTP 403.*ACCESS_KEY.*ACCESS_SECRET.*IP allow-list"),
        ([("code", 10029, "request too frequent")] * 3, {}, "too frequent.*3 attempts.*NXCC_RATE"),
        ([("http", 503)] * 3, {}, "HTTP 503.*3 attempts"),
        ([("code", 10002, "timestamp expired")], {}, "timestamp expired.*clock"),
    ],
)
def test_errors_say_what_to_check(
    fake: FakeNxcc, script: list[Any], client_kw: dict[str, Any], message: str
) -> None:
    fake.script = list(script)
    with _client(fake, **client_kw) as client, pytest.raises(nxcc.NxccError, match=message):
        client.page(BASE_S, BASE_S + 3600, 1)


def test_a_skewed_clock_is_refused_with_advice(fake: FakeNxcc) -> None:
    with _client(fake, clock=lambda: time.time() + 120) as client:
        with pytest.raises(nxcc.NxccRefused, match="timestamp expired.*clock"):
            client.page(BASE_S, BASE_S + 3600, 1)


def test_timeouts_rate_limits_and_5xx_are_retried(fake: FakeNxcc) -> None:
    fake.records = [_record(1)]
    fake.script = [("slow", 1.0), ("retry_after", 0), ("http", 502)]
    with _client(fake, timeout=0.3, retries=3) as client:
        assert len(client.page(BASE_S, BASE_S + 36_000, 1).records) == 1
    assert len(fake.requests) == 4


@pytest.mark.parametrize("msg", ["request too frequent", "请求过于频繁", "rate limit exceeded"])
def test_a_rate_limit_sent_as_an_error_code_is_retried(fake: FakeNxcc, msg: str) -> None:
    """HTTP 200 with a code saying "slow down" is waited out like a 429, not reported."""
    fake.records = [_record(1)]
    fake.script = [("code", 10029, msg), ("code", 10029, msg)]
    with _client(fake, retries=2) as client:
        assert len(client.page(BASE_S, BASE_S + 36_000, 1).records) == 1
    assert len(fake.requests) == 3


def test_other_error_codes_are_not_retried(fake: FakeNxcc) -> None:
    fake.script = [("code", 10001, "sign error")] * 3
    with _client(fake, retries=2) as client, pytest.raises(nxcc.NxccRefused):
        client.page(BASE_S, BASE_S + 3600, 1)
    assert len(fake.requests) == 1


def test_retries_back_off_exponentially_with_jitter(fake: FakeNxcc) -> None:
    """Waits of 0.1, 0.2, 0.4 s, each stretched by a random 0-50 %; Retry-After is obeyed."""
    waits: list[float] = []
    fake.script = [("http", 503), ("http", 502), ("code", 10029, "too many requests")]
    with _client(fake, retries=3, backoff=0.1, sleep=waits.append) as client:
        client.page(BASE_S, BASE_S + 3600, 1)
    ratios = [wait / (0.1 * 2**n) for n, wait in enumerate(waits)]
    assert len(ratios) == 3 and all(1 <= r <= 1.5 for r in ratios), waits
    assert len({round(r, 6) for r in ratios}) > 1, "no jitter: every wait is its base"
    waits.clear()
    fake.script = [("retry_after", 7)]
    with _client(fake, retries=1, sleep=waits.append) as client:
        client.page(BASE_S, BASE_S + 3600, 1)
    assert len(waits) == 1 and 7 <= waits[0] <= 10.5


def test_requests_keep_to_the_configured_rate(fake: FakeNxcc) -> None:
    """At 20 requests a second, 6 requests take at least 5 intervals of 50 ms."""
    with _client(fake, rate=20.0) as client:
        started = time.monotonic()
        for _ in range(6):
            client.page(BASE_S, BASE_S + 3600, 1)
        elapsed = time.monotonic() - started
    assert elapsed >= 0.25 - 0.01, elapsed


def test_an_unreachable_gateway_is_a_clear_error() -> None:
    with nxcc.Client("http://127.0.0.1:9", KEY, SECRET, retries=1, backoff=0.01) as client:
        with pytest.raises(nxcc.NxccError, match="ConnectError.*2 attempts"):
            client.page(BASE_S, BASE_S + 3600, 1)


def _cli(settings: Settings, fake: FakeNxcc | None, *args: str, **extra: str) -> Any:
    """Run the real CLI on the test database; ``extra`` adds or overrides variables."""
    env = {
        "CDRHUB_DATABASE_URL": settings.database_url,
        "CDRHUB_TOKENS": "",
        "CDRHUB_TIMEZONE": "Asia/Shanghai",
        "CDRHUB_NXCC_ACCESS_KEY": KEY,
        "CDRHUB_NXCC_ACCESS_SECRET": SECRET,
        "CDRHUB_NXCC_RATE": "1000",
        "CDRHUB_NXCC_RETRIES": "0",
    }
    if fake is not None:
        env["CDRHUB_NXCC_GATEWAY"] = fake.url
    env.update(extra)
    return CliRunner().invoke(main, list(args), env=env)


def test_cli_backfill_and_reconcile(store: Store, settings: Settings, fake: FakeNxcc) -> None:
    fake.records = [_record(i) for i in range(300)]
    span = ("--from", "2025-11-24T16:00+00:00", "--to", "2025-11-25T04:00+00:00")
    result = _cli(settings, fake, "backfill", *span)
    assert result.exit_code == 0, result.output
    assert "300 calls fetched from NXCC: 300 new" in result.output
    assert store.count_calls() == 300
    fake.requests = []
    again = _cli(settings, fake, "backfill", *span)
    assert again.exit_code == 0 and fake.requests == []  # the range is done: nothing asked
    with store.read_engine.connect() as conn:
        finished = conn.execute(select(backfill_checkpoints.c.finished_at)).scalar_one()
    local = finished.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    assert again.stdout == (
        f"range already complete (finished at {local}); use --restart to fetch it again.\n"
    )
    restarted = _cli(settings, fake, "backfill", "--restart", *span)
    assert restarted.stdout == (
        "300 calls fetched from NXCC: 0 new, 0 updated, 300 unchanged, 0 quarantined.\n"
    )
    # reconcile looks back from now: NXCC has a call from an hour ago that never arrived
    recent = int(time.time()) - 3600
    fake.records.append({"callId": "recent", "direction": 0, "startTime": recent * 1000})
    out = _cli(settings, fake, "reconcile", "--since", "3h")
    assert out.exit_code == 0, out.output
    assert "1 missing and 0 different calls found; 1 stored." in out.output
    assert "only here" in out.output and store.get_call("recent") is not None


def test_scheduled_reconcile_heals_and_reports(settings: Settings, fake: FakeNxcc) -> None:
    """Inside serve: the run's findings in /readyz and /metrics; a failed run degrades /readyz."""
    from fastapi.testclient import TestClient

    from cdrhub.app import create_app

    recent = int(time.time()) - 600
    fake.records = [{"callId": "lost", "direction": 1, "startTime": recent * 1000}]
    configured = settings.model_copy(
        update={
            "nxcc_gateway": fake.url,
            "nxcc_access_key": SecretStr(KEY),
            "nxcc_access_secret": SecretStr(SECRET),
            "nxcc_rate": 1000.0,
            "nxcc_retries": 0,
            "reconcile_every_minutes": 0.01,
            "reconcile_window_hours": 1,
        }
    )
    with TestClient(create_app(configured)) as client:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            checks = client.get("/readyz").json()["checks"]
            if checks["reconcile"]["runs"] >= 1:
                break
            time.sleep(0.1)
        assert checks["reconcile"]["last_ok"] is True and checks["reconcile"]["total_stored"] == 1
        assert checks["reconcile"]["leader"] is True and checks["reconcile"]["last_success_at"]
        metrics = client.get("/metrics").text
        assert "cdrhub_reconcile_stored 1.0" in metrics
        assert (
            "cdrhub_reconcile_leader 1.0" in metrics and "cdrhub_reconcile_last_ok 1.0" in metrics
        )
        assert "cdrhub_reconcile_failures_total 0.0" in metrics
        success = _metric(metrics, "cdrhub_reconcile_last_success_timestamp_seconds")
        assert abs(success - time.time()) < 60
        fake.script = [("code", 10001, "sign error")] * 50
        while (
            time.monotonic() < deadline
            and client.get("/readyz").json()["checks"]["reconcile"]["last_ok"]
        ):
            time.sleep(0.1)
        ready = client.get("/readyz").json()
        assert ready["status"] == "degraded"
        assert "sign error" in ready["checks"]["reconcile"]["last_error"]
        assert SECRET not in json.dumps(ready)
        metrics = client.get("/metrics").text
        assert "cdrhub_reconcile_last_ok 0.0" in metrics
        assert _metric(metrics, "cdrhub_reconcile_failures_total") >= 1
        assert _metric(metrics, "cdrhub_reconcile_last_run_timestamp_seconds") >= success
        assert _metric(metrics, "cdrhub_reconcile_last_success_timestamp_seconds") == success


def _metric(text: str, name: str) -> float:
    """The value of an unlabelled metric in Prometheus' text format."""
    (value,) = [line.split()[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    return float(value)


def test_reconcile_metrics_before_the_first_run_claim_nothing() -> None:
    """No run yet: no last_ok (0 would read as "failed") and no timestamps (1970)."""
    from cdrhub.ops.metrics import Metrics

    metrics = Metrics()
    metrics.watch_reconcile(backfill.ReconcileStatus(enabled=True, leader=True).snapshot)
    text = metrics.render().decode()
    assert "cdrhub_reconcile_runs 0.0" in text and "cdrhub_reconcile_leader 1.0" in text
    assert "cdrhub_reconcile_last_ok" not in text and "timestamp_seconds" not in text


def test_one_process_at_a_time_runs_the_schedule(settings: Settings) -> None:
    """Two handles on one database, as two processes have: one lock, taken over on release."""
    from cdrhub.pull.leader import Leadership
    from cdrhub.store import open_store

    stores = [open_store(settings.database_url) for _ in range(2)]
    first, second = (Leadership(s, "reconcile") for s in stores)
    try:
        assert first.hold() and not second.hold()
        assert first.hold() and not second.hold()  # asking again changes nothing
        other_job = Leadership(stores[1], "something-else")
        assert other_job.hold()
        other_job.release()
        first.release()
        assert second.hold() and not first.hold()
    finally:
        first.release()
        second.release()
        for store in stores:
            store.close()


def test_two_receivers_run_one_schedule(serve: Any, fake: FakeNxcc) -> None:
    """Two real `cdrhub serve` processes on one database: one runs the reconcile, the other
    shows its runs; when it stops, the other takes over."""
    import httpx

    recent = int(time.time()) - 600
    fake.records = [{"callId": "lost", "direction": 1, "startTime": recent * 1000}]
    env = {
        "CDRHUB_NXCC_GATEWAY": fake.url,
        "CDRHUB_NXCC_ACCESS_KEY": KEY,
        "CDRHUB_NXCC_ACCESS_SECRET": SECRET,
        "CDRHUB_NXCC_RATE": "1000",
        "CDRHUB_NXCC_RETRIES": "0",
        "CDRHUB_RECONCILE_EVERY_MINUTES": "0.01",
        "CDRHUB_RECONCILE_WINDOW_HOURS": "1",
    }
    servers = [serve(**env), serve(**env)]

    def reconcile_of(server: Any) -> dict[str, Any]:
        return httpx.get(f"{server.url}/readyz", timeout=5).json()["checks"]["reconcile"]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [reconcile_of(s) for s in servers]
        if all(s["runs"] >= 2 and s["leader"] is not None for s in states):
            break
        time.sleep(0.2)
    assert sorted(s["leader"] for s in states) == [False, True], states
    leader = servers[[s["leader"] for s in states].index(True)]
    standby = servers[1 - servers.index(leader)]
    assert reconcile_of(standby)["total_stored"] == 1  # the leader's runs, shared
    standby_metrics = httpx.get(f"{standby.url}/metrics", timeout=5).text
    assert "cdrhub_reconcile_leader 0.0" in standby_metrics
    assert "cdrhub_reconcile_runs" not in standby_metrics  # counted once, by the leader
    leader.stop()
    while time.monotonic() < deadline + 30 and not reconcile_of(standby)["leader"]:
        time.sleep(0.2)
    assert reconcile_of(standby)["leader"] is True


def test_cli_errors_are_one_line_not_a_traceback(settings: Settings, fake: FakeNxcc) -> None:
    fake.script = [("code", 10001, "sign error")]
    result = _cli(settings, fake, "reconcile", "--since", "2h")
    assert result.exit_code == 1
    assert "Error: NXCC refused the request: code 10001" in result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    missing = CliRunner().invoke(
        main,
        ["backfill", "--from", "2026-11-01", "--to", "2026-11-02"],
        env={"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""},
    )
    assert missing.exit_code == 1 and "CDRHUB_NXCC_ACCESS_KEY" in missing.output


def test_cli_resumed_backfill_says_what_the_earlier_run_did(
    store: Store, settings: Settings, fake: FakeNxcc
) -> None:
    fake.records = [_record(i) for i in range(600)]
    fake.fail_after = 4
    span = ("--from", "2025-11-24T16:00+00:00", "--to", "2025-11-25T02:00+00:00")
    broken = _cli(settings, fake, "backfill", *span)
    assert broken.exit_code == 1 and "run the same command again to resume" in broken.output
    with store.read_engine.connect() as conn:
        earlier = json.loads(conn.execute(select(backfill_checkpoints.c.counts)).scalar_one())
    assert 0 < earlier["fetched"] < 600
    fake.fail_after = None
    resumed = _cli(settings, fake, "backfill", *span)
    assert resumed.stdout == (
        f"600 calls fetched from NXCC (of which {earlier['fetched']} before it was "
        "interrupted): 600 new, 0 updated, 0 unchanged, 0 quarantined.\n"
    )


def test_backfill_does_not_checkpoint_hours_still_to_come(store: Store, fake: FakeNxcc) -> None:
    """Up to now: the last hour is pulled but left open, later ones are not even asked for."""
    fake.records = [_record(i) for i in range(100)]
    now = BASE_S + 5 * 3600 + 1800  # half past the fifth hour
    with _client(fake) as client:
        first = backfill.backfill(store, client, BASE_S, BASE_S + 10 * 3600, now_s=now)
    assert first.unsettled_from == BASE_S + 4 * 3600 and first.finished_at is None
    assert max(q["startTime"] for q in fake.requests) == BASE_S + 5 * 3600
    with store.read_engine.connect() as conn:
        row = conn.execute(select(backfill_checkpoints)).mappings().one()
    assert row["done_until"] == BASE_S + 4 * 3600 and row["finished_at"] is None
    # Later, the hours have happened: what NXCC got since is fetched, and the range completes.
    fake.records.append(_record(100, startTime=(BASE_S + 8 * 3600) * 1000) | {"callId": "later"})
    fake.requests = []
    with _client(fake) as client:
        second = backfill.backfill(store, client, BASE_S, BASE_S + 10 * 3600)
    assert min(q["startTime"] for q in fake.requests) == BASE_S + 4 * 3600
    assert store.get_call("later") is not None and second.unsettled_from is None
    assert second.tally.created == store.count_calls() == 101
    with _client(fake) as client:
        third = backfill.backfill(store, client, BASE_S, BASE_S + 10 * 3600)
    assert third.finished_at is not None


def test_cli_backfill_of_today_warns_and_stays_open(
    store: Store, settings: Settings, fake: FakeNxcc
) -> None:
    """Run twice today: a call NXCC got in between (its push lost) is fetched by the second."""
    from datetime import datetime

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    first = _cli(settings, fake, "backfill", "--from", today, "--to", today)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("0 calls fetched from NXCC")
    assert "NXCC may still add calls" in first.stderr and "not checkpointed" in first.stderr
    recent = int(time.time()) - 60
    fake.records.append({"callId": "meanwhile", "direction": 0, "startTime": recent * 1000})
    second = _cli(settings, fake, "backfill", "--from", today, "--to", today)
    assert second.exit_code == 0, second.output
    assert "1 new" in second.stdout and store.get_call("meanwhile") is not None


@pytest.mark.parametrize("day", ["2025-11-25", "20251125"])
def test_cli_dates_are_whole_days_in_the_configured_zone(
    settings: Settings, fake: FakeNxcc, day: str
) -> None:
    """Asia/Shanghai's 25 November is 16:00 UTC on the 24th up to 16:00 UTC on the 25th."""
    result = _cli(settings, fake, "backfill", "--from", day, "--to", day)
    assert result.exit_code == 0, result.output
    start = int(datetime(2025, 11, 24, 16, tzinfo=UTC).timestamp())
    assert min(q["startTime"] for q in fake.requests) == start
    assert max(q["endTime"] for q in fake.requests) == start + 24 * 3600
    assert len(fake.requests) == 24


def test_cli_reconcile_hours_are_local_hours(settings: Settings, fake: FakeNxcc) -> None:
    result = _cli(settings, fake, "reconcile", "--since", "3h", CDRHUB_TIMEZONE="Asia/Kolkata")
    assert result.exit_code == 0, result.output
    labels = [line.split("│")[1].strip() for line in result.stdout.splitlines() if "│" in line]
    assert len(labels) in (3, 4) and all(label.endswith(":00") for label in labels[1:])


def test_reconcile_quarantines_an_invalid_record_once(
    store: Store, settings: Settings, fake: FakeNxcc
) -> None:
    """Three runs see NXCC's one bad record: one quarantine entry, reported at every run."""
    recent = int(time.time()) - 600
    fake.records = [
        {"callId": "bad-1", "direction": 7, "startTime": recent * 1000},
        {"callId": "ok-1", "direction": 0, "startTime": (recent - 60) * 1000},
    ]
    for _ in range(3):
        result = _cli(settings, fake, "reconcile", "--since", "2h")
        assert result.exit_code == 0, result.output
        assert "1 invalid at NXCC, in quarantine" in result.stdout
        assert "quarantined" in result.stdout.splitlines()[1]  # the table's header
    assert [q["call_id"] for q in store.quarantined()] == ["bad-1"]
    with _client(fake) as client:
        hours = backfill.reconcile(store, client, recent - 3600, recent + 60)
    assert sum(h.stored.quarantined for h in hours) == 1
    assert sum(h.stored.quarantined_before for h in hours) == 1


@contextmanager
def _database_held(settings: Settings) -> Iterator[dict[str, str]]:
    """Keep the database busy as another writer would; yields the env that makes cdrhub
    give up after a short wait."""
    if settings.database_url.startswith("sqlite"):
        import sqlite3

        holder = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
        holder.isolation_level = None
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield {"CDRHUB_SQLITE_BUSY_TIMEOUT_MS": "200"}
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    import psycopg

    with psycopg.connect(settings.database_url) as holder:
        holder.execute("LOCK TABLE calls, backfill_checkpoints IN ACCESS EXCLUSIVE MODE")
        yield {"PGOPTIONS": "-c lock_timeout=300"}
        holder.rollback()


@pytest.mark.parametrize("command", ["backfill", "reconcile", "import"])
def test_a_busy_database_is_a_one_line_error(
    store: Store, settings: Settings, fake: FakeNxcc, tmp_path: Path, command: str
) -> None:
    """Another writer holds the database: each command ends with one line, whichever write
    or read meets the lock (for import, only the "seen by import" marks are left to write)."""
    recent = int(time.time()) - 600
    fake.records = [_record(i) for i in range(20)] + [
        {"callId": "recent", "direction": 0, "startTime": recent * 1000}
    ]
    calls_file = tmp_path / "calls.json"
    calls_file.write_text(json.dumps([_record(i) for i in range(3)]), encoding="utf-8")
    store.write([_push(_record(i)) for i in range(3)])
    args = {
        "backfill": [
            "backfill",
            "--from",
            "2025-11-24T16:00+00:00",
            "--to",
            "2025-11-24T18:00+00:00",
        ],
        "reconcile": ["reconcile", "--since", "2h"],
        "import": ["import", str(calls_file)],
    }[command]
    with _database_held(settings) as env:
        result = _cli(settings, fake, *args, **env)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert error and error[0].startswith("Error: ") and "database unavailable: " in error[0]
    assert "Traceback" not in result.output and "SELECT" not in result.output


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ("api2.nxcloud.com", "must be an https:// \\(or http://\\) URL"),
        ("http://[::1", "is not a URL"),
        ("ftp://api2.nxcloud.com", "must be an https://"),
    ],
)
def test_a_malformed_gateway_is_refused_with_the_setting_named(
    settings: Settings, gateway: str, message: str
) -> None:
    result = _cli(settings, None, "reconcile", "--since", "1h", CDRHUB_NXCC_GATEWAY=gateway)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert re.search(f"Error: invalid settings: CDRHUB_NXCC_GATEWAY: .*{message}", result.output)


# -- import ---------------------------------------------------------------------------------------


def test_import_json_jsonl_and_a_chinese_csv(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(_record(1), ensure_ascii=False), encoding="utf-8")
    many = tmp_path / "many.json"
    many.write_text(json.dumps([_record(2), _record(3)], ensure_ascii=False), encoding="utf-8")
    lines = tmp_path / "lines.jsonl"
    lines.write_text("\n".join(json.dumps(_record(i)) for i in (4, 5)) + "\n", encoding="utf-8")
    table = tmp_path / "console.csv"
    table.write_text(
        "callId,startTime,direction,answered,agentName,intent,hangupReason,totalCustomerPrice\n"
        "csv-1,1764000000000,0,true,张三,转人工-成功,正常挂机,0.035\n"
        "csv-2,1764000060000,2,false,,,,\n"
        "csv-bad,not-a-time,0,,,,,\n",
        encoding="utf-8-sig",  # as Excel saves it
    )
    result = _cli(settings, None, "import", str(one), str(many), str(lines), str(table))
    assert result.exit_code == 0, result.output
    assert "1 records quarantined" in result.output
    assert store.count_calls() == 7
    row = store.get_call("csv-1")
    assert row is not None
    assert (row["agent_name"], row["intent"], row["hangup_reason"]) == (
        "张三",
        "转人工-成功",
        "正常挂机",
    )
    assert row["answered"] is True and row["start_time_ms"] == 1764000000000
    assert row["source"] == "import"
    bad = store.quarantined()
    assert [(q["call_id"], q["source"], q["path"]) for q in bad] == [
        ("csv-bad", "import", str(table))
    ]
    again = _cli(settings, None, "import", str(table))
    assert store.count_calls() == 7 and again.exit_code == 0
    assert len(store.quarantined()) == 1  # the same bad row is not quarantined twice


_CONSOLE_CSV = (
    "callId,startTime,direction,answered,agentName,intent,hangupReason\n"
    "enc-1,1764000000000,0,true,张三,转人工-成功,正常挂机\n"
)


@pytest.mark.parametrize(
    ("name", "encoding", "separator"),
    [
        ("gbk.csv", "gbk", ","),  # Excel on Chinese Windows: "CSV (comma delimited)"
        ("gb18030.csv", "gb18030", ","),
        ("utf16.csv", "utf-16", "\t"),  # Excel's "Unicode text", renamed
        ("utf16.txt", "utf-16", "\t"),  # ... as Excel names it
        ("utf16be.tsv", "utf-16-be", "\t"),
    ],
)
def test_import_reads_what_excel_saves(
    store: Store, settings: Settings, tmp_path: Path, name: str, encoding: str, separator: str
) -> None:
    path = tmp_path / name
    data = _CONSOLE_CSV.replace(",", separator).encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    result = _cli(settings, None, "import", str(path))
    assert result.exit_code == 0, result.output
    row = store.get_call("enc-1")
    assert row is not None and (row["agent_name"], row["intent"]) == ("张三", "转人工-成功")
    assert row["start_time_ms"] == 1764000000000 and row["answered"] is True


def test_a_file_that_is_no_known_text_is_refused(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"callId,startTime\n\x80\xff\x80\xff,1\n")
    result = _cli(settings, None, "import", str(path))
    assert result.exit_code == 1 and "not UTF-8, UTF-16 or GBK/GB18030" in result.output


def test_a_bad_line_anywhere_stores_nothing_from_any_file(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """Line 701 of the second file is broken: the message says nothing was stored, and it is so."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps([_record(i) for i in range(3)]), encoding="utf-8")
    lines = tmp_path / "big.jsonl"
    lines.write_text(
        "\n".join([json.dumps(_record(i)) for i in range(700)] + ["{not json"]) + "\n",
        encoding="utf-8",
    )
    result = _cli(settings, None, "import", str(good), str(lines))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"Error: {lines}, line 701: not JSON" in result.output
    assert "Nothing was stored." in result.output
    assert store.count_calls() == 0


def test_a_broken_csv_stores_nothing(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A quote never closed swallows the rest of the file: found before row 1 is stored."""
    path = tmp_path / "broken.csv"
    rows = "".join(f"ok-{i},1764000000000,0\n" for i in range(600))
    runaway = 'x,"1764000000000,0\n' + "y,1764000000000,0\n" * 10_000
    path.write_text("callId,startTime,direction\n" + rows + runaway, encoding="utf-8")
    result = _cli(settings, None, "import", str(path))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "not a readable CSV (field larger than field limit" in result.output
    assert "Nothing was stored." in result.output and store.count_calls() == 0


def test_numbers_a_spreadsheet_rounded_are_quarantined_with_the_reason(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """1.764E+12 for a time, 1.68836E+18 for a taskId: refused, never stored rounded."""
    path = tmp_path / "excel.csv"
    path.write_text(
        "callId,startTime,endTime,direction,taskId,caller\n"
        "excel-1,1.764E+12,1764000060000,2,1688363452814331904,85235757581\n"
        "excel-2,1764000000000,1764000060000.00,2,1.68836E+18,85235757581\n"
        "excel-3,1764000000000,1764000060000,2,1688363452814331904,8.52358E+10\n"
        "excel-4,1764000000000,1764000060000,2,1688363452814331904,85235757581\n",
        encoding="utf-8-sig",
    )
    result = _cli(settings, None, "import", str(path))
    assert result.exit_code == 0, result.output
    assert "3 records quarantined" in result.output
    assert store.count_calls() == 1 and store.get_call("excel-4") is not None
    problems = {
        q["call_id"]: [(f["field"], f["value"]) for f in json.loads(q["detail"])["fields"]]
        for q in store.quarantined()
    }
    assert problems == {
        "excel-1": [("startTime", "1.764E+12")],
        "excel-2": [("endTime", "1764000060000.00"), ("taskId", "1.68836E+18")],
        "excel-3": [("caller", "8.52358E+10")],
    }
    detail = store.quarantined()[0]["detail"]
    assert "spreadsheet" in detail and "lost digits" in detail


def test_a_push_still_takes_a_time_written_as_a_float(push: Any, store: Store) -> None:
    """Only files are held to digits: a push's 1.691372192E12 is exact, and still accepted."""
    body = json.dumps({"callId": "float-1", "startTime": 1.691372192e12})
    assert push(body).status_code == 200
    assert store.get_call("float-1")["start_time_ms"] == 1691372192000  # type: ignore[index]


def test_unknown_csv_columns_stay_in_the_raw_body(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "extra.csv"
    path.write_text(
        "callId,startTime,direction,tenantId,新字段\nx-1,1764000000000,0,T42,值\n", encoding="utf-8"
    )
    assert _cli(settings, None, "import", str(path)).exit_code == 0
    (raw,) = store.raw_versions("x-1")
    assert json.loads(raw["body"]) == {
        "callId": "x-1",
        "startTime": "1764000000000",
        "direction": "0",
        "tenantId": "T42",
        "新字段": "值",
    }


def test_import_reads_cdrhubs_own_csv_export(
    store: Store, settings: Settings, api: Any, tmp_path: Path
) -> None:
    store.write([_push(_record(1, caller="=cmd|' /C calc'!A0", intent="有意向"))])
    exported = api("/api/export", format="csv").content
    path = tmp_path / "export.csv"
    path.write_bytes(exported)
    original = store.get_call("call-00001")
    other = _cli(
        settings.model_copy(update={"database_url": settings.database_url}),
        None,
        "import",
        str(path),
    )
    assert other.exit_code == 0, other.output
    assert "1 " in other.output and store.get_call("call-00001") == original  # unchanged


def test_import_refuses_a_file_that_is_not_call_logs(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello", encoding="utf-8")
    result = _cli(settings, None, "import", str(path))
    assert result.exit_code == 1 and "not JSON, JSON Lines or CSV" in result.output
