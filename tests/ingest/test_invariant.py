"""The push invariant: a request with a valid token ends with a 200 or its body in quarantine.

NXCC retries a call for an hour and then drops it, so an authenticated body answered 500 and
kept nowhere is a lost call. These tests send hostile bodies through a real ``cdrhub serve``
on both databases and check, for every one, where its exact bytes ended up.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from cdrhub import cdr
from cdrhub.app import create_app
from cdrhub.ingest import Spool
from cdrhub.settings import Settings
from cdrhub.store import Push, Store
from tests.helpers import TOKEN, Server

# -- hostile bodies ---------------------------------------------------------------------------

_ODD_CHARACTERS = ["\x00", "\n", "\r", "\t", "\x1b[31m", "\x7f", "\u2028", "\u202e", "\ufeff"]
_LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
hostile_text = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(exclude_categories=()), max_size=12),  # lone surrogates included
    st.lists(
        st.sampled_from([*_ODD_CHARACTERS, *_LONE_SURROGATES, "a", "中", "😀"]), max_size=8
    ).map("".join),
    # Longer than an index entry may be: CJK text, which PostgreSQL cannot compress below it.
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=500, max_size=1200),
)
huge_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from(
        [2**31, 2**63, 2**64, -(2**63) - 1, 10**308, 10**309, 253402300799999, 253402300800000]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0]),
)
numeric_strings = st.sampled_from(
    ["1e400", "-1e400", "9" * 400, "NaN", "Infinity", " 1 ", "0x10", "1_000", "1e308", "", " "]
)
leaves = st.none() | st.booleans() | huge_numbers | hostile_text | numeric_strings
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=10,
)
deep = st.integers(min_value=1, max_value=600).map(lambda depth: _nest(depth))
call_ids = st.one_of(st.uuids().map(str), hostile_text, huge_numbers, st.none(), values)
field_names = st.sampled_from([f.name for f in cdr.FIELDS]) | hostile_text


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"n": value}
    return value


@st.composite
def json_objects(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(st.dictionaries(field_names, values | deep, max_size=8))
    if draw(st.booleans()):
        data["callId"] = draw(call_ids)
    return data


def _encode(value: Any, how: str) -> bytes:
    """JSON bytes: ASCII escapes, UTF-8, or UTF-8 with raw surrogates (which is not UTF-8)."""
    if how == "ascii":
        return json.dumps(value).encode()
    text_ = json.dumps(value, ensure_ascii=False)
    if how == "surrogatepass":
        return text_.encode("utf-8", "surrogatepass")
    try:
        return text_.encode()
    except UnicodeEncodeError:
        return json.dumps(value).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """An object most of the time, else any JSON; encoded some way; then perhaps damaged."""
    value = draw(json_objects() | values | deep) if draw(st.integers(0, 4)) == 0 else None
    if value is None:
        value = draw(json_objects())
    body = _encode(value, draw(st.sampled_from(["ascii", "utf-8", "surrogatepass"])))
    damage = draw(st.sampled_from(["none", "none", "none", "byte", "cut", "bom", "raw", "tail"]))
    if damage == "byte":
        at = draw(st.integers(0, len(body)))
        bad = draw(st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x00", b"\x80"]))
        body = body[:at] + bad + body[at:]
    elif damage == "cut":
        body = body[: draw(st.integers(0, len(body)))]
    elif damage == "bom":
        body = b"\xef\xbb\xbf" + body
    elif damage == "raw":
        body = draw(st.binary(max_size=64))
    elif damage == "tail":
        body += draw(st.sampled_from([b"\x00", b" garbage", b"}", b"\n\n", b"{}"]))
    return body


content_types = st.sampled_from(
    [
        "application/json",
        "application/json",
        "application/json; charset=UTF-8",
        "APPLICATION/JSON",
        "application/json;;",
        "application/jsonx",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
        None,
    ]
)

_JSON = "application/json"
#: 1000 different CJK characters: an index entry PostgreSQL cannot compress below its limit.
_INCOMPRESSIBLE = "".join(chr(0x4E00 + i * 7919 % 20000) for i in range(1000)).encode()
_KEPT = re.compile(r"kept in quarantine as #(\d+)")


def _check_outcome(store: Store, body: bytes, response: httpx.Response) -> None:
    """The invariant for one request: stored as sent, or in quarantine as sent."""
    assert response.status_code in (200, 400, 413, 415, 422), response.text
    answer = response.json()
    if response.status_code == 200:
        assert answer["result"] in ("created", "updated", "duplicate", "stale"), answer
        versions = store.raw_versions(answer["callId"])
        if answer["result"] in ("created", "updated"):
            assert body in [bytes(v["body"]) for v in versions]
        else:  # this content was stored before, under its content hash
            digest = cdr.content_hash(msgspec.json.decode(body))
            assert digest in [v["content_hash"] for v in versions]
        return
    assert set(answer) == {"error", "detail", "fields"}
    kept = _KEPT.search(answer["detail"])
    assert kept, answer
    entry = store.quarantine_entry(int(kept.group(1)))
    assert entry is not None
    assert (entry["status"], entry["reason"]) == (response.status_code, answer["error"])
    if response.status_code == 413:
        assert body.startswith(bytes(entry["body"])) and entry["body_complete"] is False
    else:
        assert bytes(entry["body"]) == body and entry["body_complete"] is True


def _assert_no_bug_was_logged(server: Server) -> None:
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "unexpectedly" not in log, log[-3000:]


@settings(
    max_examples=150,
    deadline=timedelta(seconds=10),  # a push never takes that long; a hang must fail
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies(), content_type=content_types)
@example(body=b'{"callId":"price-1","totalCustomerPrice":1' + b"0" * 400 + b"}", content_type=_JSON)
@example(body=b'{"callId":"nul\\u0000id"}', content_type=_JSON)
@example(body=b'{"callId":"' + _INCOMPRESSIBLE + b'"}', content_type=_JSON)
@example(body=b'{"callId":"c-1","caller":"' + _INCOMPRESSIBLE + b'"}', content_type=_JSON)
@example(body=b'{"callId":"\\ud800"}', content_type=_JSON)
@example(body=b'{"callId":"\xed\xa0\x80"}', content_type=_JSON)
def test_every_authenticated_push_is_stored_or_quarantined_byte_for_byte(
    live: tuple[Server, Store, httpx.Client], body: bytes, content_type: str | None
) -> None:
    """Hostile bodies with a valid token: 200 and stored as sent, or a 4xx and kept as sent.

    Never a 500 (with no outage there is nothing that may fail), never a spooled 200 (the
    database is up: a "spooled" here is a value the database refused, mistaken for an outage).
    """
    server, store, http = live
    headers = {"token": TOKEN}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = http.post(f"{server.url}/cc/callback", content=body, headers=headers)
    _check_outcome(store, body, response)


@pytest.fixture
def live(serve: Callable[..., Server], store: Store) -> Any:
    """One real server per database for all of a test's examples, and a keep-alive client."""
    server = serve()
    with httpx.Client(timeout=30) as http:
        yield server, store, http
        # After every hostile body the server still stores a plain call at once.
        after = http.post(
            f"{server.url}/cc/callback", json={"callId": "after-hostile"}, headers={"token": TOKEN}
        )
        assert after.status_code == 200 and after.json()["result"] in ("created", "duplicate")
    _assert_no_bug_was_logged(server)


# -- what the database refuses, found only when draining the spool ---------------------------


def _refuse_call(store: Store, call_id: str) -> None:
    """Make the database itself refuse one call, as it would refuse a value it cannot hold."""
    with store.write_engine.begin() as conn:
        if store.kind == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_call BEFORE INSERT ON calls "
                    f"WHEN NEW.call_id = '{call_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )
        else:
            # 54000 program_limit_exceeded: what an index entry over 2704 bytes raises, and
            # what psycopg reports as an OperationalError, the class of outages.
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_call() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.call_id = '{call_id}' THEN "
                    "RAISE EXCEPTION 'index row too big' USING ERRCODE = '54000'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_call BEFORE INSERT ON calls "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_call()"
                )
            )


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_a_spooled_call_the_database_refuses_is_quarantined_and_holds_back_nothing(
    settings: Settings, store: Store
) -> None:
    """A spooled push (answered 200) the database refuses on drain goes to the quarantine.

    It must neither end the writer thread (every later push would wait forever) nor pass
    for an outage (it would stay in the spool for good, every later push queued behind it).
    """
    _refuse_call(store, "poison")
    poison = b'{"callId":"poison","callDuration":3}'
    good = b'{"callId":"good-1"}'
    orphan = Spool(settings.spool_directory)  # left by a process that answered 200 and died
    orphan.append([Push(cdr.parse(poison), poison), Push(cdr.parse(good), good)])
    orphan.close()
    with TestClient(create_app(settings)) as client:
        _wait_for(lambda: store.get_call("good-1") is not None)
        _wait_for(lambda: len(store.quarantined()) == 1)
        [entry] = store.quarantined()
        assert bytes(entry["body"]) == poison and entry["reason"] == "store_failed"
        assert entry["call_id"] == "poison"
        assert client.get("/readyz").json()["checks"]["spool"]["pending"] == 0
        after = client.post("/cc/callback", json={"callId": "good-2"}, headers={"token": TOKEN})
        assert after.json()["result"] == "created"
        refused = client.post(
            "/cc/callback", content=poison, headers={"token": TOKEN, "Content-Type": _JSON}
        )
        assert refused.status_code == 500 and refused.json()["error"] == "store_failed"
        assert bytes(store.quarantined()[0]["body"]) == poison
    assert store.get_call("poison") is None


# -- the other ways in: import and backfill --------------------------------------------------


def _hostile_records(prefix: str, start_ms: int) -> list[dict[str, Any]]:
    """Records Python's ``json`` decodes but no column (or no UTF-8) can hold, and a good one."""
    return [
        {"callId": f"{prefix}surrogate-\ud800", "startTime": start_ms},
        {"callId": f"{prefix}nul-\x00", "startTime": start_ms},
        {"callId": f"{prefix}price", "totalCustomerPrice": 10**400, "startTime": start_ms},
        {"callId": prefix + _INCOMPRESSIBLE.decode(), "startTime": start_ms},
        {"callId": f"{prefix}fine", "startTime": start_ms},
    ]


def test_import_and_reconcile_quarantine_what_no_column_holds(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """A file or NXCC's query API with such records: the others stored, these quarantined."""
    from click.testing import CliRunner

    from cdrhub.cli import main
    from cdrhub.pull import backfill, nxcc
    from tests.helpers.fake_nxcc import KEY, SECRET, FakeNxcc, running

    recent_s = int(time.time()) - 600
    records = _hostile_records("file-", recent_s * 1000)
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(records), encoding="utf-8")  # the surrogate as its escape
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    result = CliRunner().invoke(main, ["import", str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert store.get_call("file-fine") is not None
    kept = {bytes(q["body"]) for q in store.quarantined()}
    assert kept == {cdr.encode(r) for r in records[:-1]}

    with running(FakeNxcc()) as fake:
        fake.records = _hostile_records("nxcc-", (recent_s - 60) * 1000)
        with nxcc.Client(fake.url, KEY, SECRET, rate=1000.0, retries=0) as client:
            hours = backfill.reconcile(store, client, recent_s - 3600, recent_s + 60)
    assert sum(h.stored.quarantined for h in hours) == 4
    assert store.get_call("nxcc-fine") is not None
    assert len(store.quarantined()) == 8


# -- log forging ----------------------------------------------------------------------------

FORGED = "2031-01-01 00:00:00,000 INFO cdrhub.ingest: push 200 created call forged"


def test_call_data_cannot_write_extra_lines_into_the_text_log(
    serve: Callable[..., Server], store: Store
) -> None:
    """A callId carrying CR/LF, stored or refused, stays on its own log line, escaped."""
    server = serve(CDRHUB_LOG_FORMAT="text", CDRHUB_LOG_LEVEL="info", CDRHUB_LOG_PUSHES="true")
    url = f"{server.url}/cc/callback"
    stored = httpx.post(url, json={"callId": f"a\n{FORGED}"}, headers={"token": TOKEN})
    assert stored.status_code == 200
    refused = httpx.post(
        url, json={"callId": f"b\r\n{FORGED}", "direction": 9}, headers={"token": TOKEN}
    )
    assert refused.status_code == 422
    nul = httpx.post(url, json={"callId": f"c\x00\u2028{FORGED}"}, headers={"token": TOKEN})
    assert nul.status_code == 422
    server.stop()
    log = server.log.read_text()
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith("2031-")], log
    assert f"call a\\x0a{FORGED}" in log  # the stored push's line, escaped
    assert f"call b\\x0d\\x0a{FORGED}" in log  # the quarantine's line, escaped
    assert f"c\\x00\\u2028{FORGED}" in log
    assert "\x00" not in log and "\u2028" not in log
    # uvicorn's own lines go through the same formatter (and so the same escaping).
    assert re.search(r"^\S+ \S+ INFO uvicorn.error: Application startup complete", log, re.M), log


def test_a_traceback_cannot_pass_for_a_log_record() -> None:
    """An exception message holding a newline and a fake record: every line of it indented."""
    from cdrhub.ops import TextFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("cdrhub.test_forging")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError(f"bad value\n{FORGED}\r{FORGED}")
        except ValueError:
            logger.exception("failed for %s", f"x\n{FORGED}")
    finally:
        logger.removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith(f"failed for x\\x0a{FORGED}")
    assert rest and all(line.startswith("    ") for line in rest), rest
    assert "\r" not in stream.getvalue()


def test_quarantine_keeps_labels_the_database_cannot_hold(store: Store, tmp_path: Path) -> None:
    """A refused body whose callId or origin holds NUL or a lone surrogate is still kept."""
    from cdrhub.store import Rejected

    body = b'{"callId":"a\\u0000b"}'
    entry = store.quarantine(
        Rejected(
            body=body,
            status=422,
            reason="invalid_record",
            detail={"fields": [{"value": "a\x00b\ud800"}]},
            call_id="a\x00b",
            path=str(tmp_path / "import-\udcff.json"),  # a file name that is not UTF-8
        )
    )
    kept = store.quarantine_entry(entry)
    assert kept is not None and bytes(kept["body"]) == body
    assert kept["call_id"] == "a\\x00b" and kept["path"].endswith("import-\\udcff.json")
    assert json.loads(kept["detail"]) == {"fields": [{"value": "a\x00b\ud800"}]}


# -- what senders chose, on an operator's terminal -------------------------------------------


def test_the_cli_shows_sender_text_literally_and_without_terminal_escapes(
    push: Any, settings: Settings, store: Store
) -> None:
    """Rich markup or escape sequences in a callId or agent name: printed, never obeyed.

    ``[/x]`` ended ``quarantine list`` and ``stats`` with a MarkupError, and a body's
    ``ESC ]`` or ``ESC [`` sequences reached the terminal through ``quarantine show``.
    """
    from click.testing import CliRunner

    from cdrhub.cli import main

    assert push({"callId": "[/x]\x1b[2J", "direction": 7}).status_code == 422
    raw = b'{"callId":"esc","x":"\x1b]0;owned\x07' + b"\x9b31m"  # not JSON: kept as sent
    assert push(raw).status_code == 400
    agent = {"callId": "ok-1", "agentName": "[/b]\x1b[31m", "startTime": 1764000000000}
    assert push(agent).status_code == 200
    env = {"CDRHUB_DATABASE_URL": settings.database_url, "CDRHUB_TOKENS": ""}
    runner = CliRunner()
    listing = runner.invoke(main, ["quarantine", "list"], env=env)
    assert listing.exit_code == 0, listing.output
    assert "[/x]\\x1b[2J" in listing.output and "\x1b" not in listing.output
    for entry in store.quarantined():
        shown = runner.invoke(main, ["quarantine", "show", str(entry["id"])], env=env)
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.output and "\x07" not in shown.output
    shown = runner.invoke(main, ["quarantine", "show", str(store.quarantined()[0]["id"])], env=env)
    assert "\\x1b]0;owned\\x07" in shown.output
    stats = runner.invoke(
        main,
        ["stats", "--from", "2025-11-01", "--to", "2025-12-01", "--group-by", "agent"],
        env=env,
    )
    assert stats.exit_code == 0, stats.output
    assert "[/b]\\x1b[3" in stats.output and "\x1b" not in stats.output  # cut to fit the column
