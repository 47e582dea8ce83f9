"""The field model: every pushed value is either typed correctly or reported precisely."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdrhub import cdr
from cdrhub.errors import BadJson, InvalidRecord
from tests.helpers import Api, Push

# The seed's field table, in its order. (It has 28 rows; NXCC.md's "27" miscounts it.)
SEED_FIELDS = (
    "agentName agentNickName answered answerTime callDuration callee caller callId direction "
    "dtmfKeys endTime hangupBy hangupCode callStatus hangupReason inQueueTime leaveMsgUrl "
    "orderId other intent outQueueTime queueDuration recordUrl ringDuration ringTime startTime "
    "taskId totalCustomerPrice"
).split()


def test_every_field_of_the_vendor_table_has_a_snake_case_column() -> None:
    """All fields of the vendor's table, each with its snake_case column and a time's _ms twin."""
    assert [f.name for f in cdr.FIELDS] == SEED_FIELDS
    assert cdr.FIELDS[0].column == "agent_name"
    assert "leave_msg_url" in cdr.COLUMNS and "in_queue_time_ms" in cdr.COLUMNS
    assert len(cdr.COLUMNS) == len(SEED_FIELDS) + 6


@pytest.mark.parametrize(
    ("field", "value", "column", "expected"),
    [
        ("answered", True, "answered", True),
        ("answered", "TRUE", "answered", True),
        ("answered", 0, "answered", False),
        ("direction", "2", "direction", 2),
        ("direction", 1.0, "direction", 1),
        ("callDuration", " 42 ", "call_duration", 42),
        ("startTime", 1691372191000.0, "start_time_ms", 1691372191000),
        ("startTime", "1691372191000", "start_time", datetime(2023, 8, 7, 1, 36, 31, tzinfo=UTC)),
        ("answerTime", 0, "answer_time", None),
        ("answerTime", "", "answer_time_ms", None),
        ("totalCustomerPrice", 3, "total_customer_price", 3.0),
        ("taskId", 1688363452814331904, "task_id", "1688363452814331904"),
        ("other", {"crm": "A-1"}, "other", '{"crm":"A-1"}'),
        ("agentName", None, "agent_name", None),
    ],
)
def test_lenient_values(field: str, value: Any, column: str, expected: Any) -> None:
    """Values real senders produce are accepted and converted to the column's type."""
    record = cdr.to_record({"callId": "x", field: value})
    assert record.values[column] == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("answered", "maybe"),
        ("answered", 2),
        ("direction", 3),
        ("direction", "inbound"),
        ("hangupBy", -1),
        ("startTime", "2023-08-07"),
        ("startTime", -5),
        ("startTime", 10**20),
        ("endTime", True),
        ("callDuration", 1.5),
        ("ringDuration", -1),
        ("totalCustomerPrice", "free"),
        ("totalCustomerPrice", [1]),
        ("callee", ["a"]),
        ("caller", "nul\x00byte"),
        ("callId", True),
        # Values no column can hold: refused with the field named, never a crash or a 500.
        ("totalCustomerPrice", 10**400),
        ("totalCustomerPrice", "9" * 400),
        ("totalCustomerPrice", -(10**309)),
        ("callId", "x" * (cdr.MAX_INDEXED_CHARS + 1)),
        ("caller", "1" * (cdr.MAX_INDEXED_CHARS + 1)),
        ("callee", "长" * (cdr.MAX_INDEXED_CHARS + 1)),
    ],
)
def test_impossible_values_are_reported(field: str, value: Any) -> None:
    """A value that cannot be its field's type is a 422 naming the field and the value."""
    with pytest.raises(InvalidRecord) as caught:
        cdr.to_record({"callId": "x", field: value})
    [problem] = caught.value.fields
    assert problem.field == field
    assert problem.expected
    msgspec.json.encode(problem.value)  # always renderable in the error body


@pytest.mark.parametrize("field", ["callId", "caller", "callee"])
def test_indexed_text_up_to_its_limit_is_accepted(field: str) -> None:
    """The longest callId, caller or callee the database can index is a valid value."""
    value = "长" * cdr.MAX_INDEXED_CHARS  # 4 bytes a character at most: inside 2704 bytes
    record = cdr.to_record({"callId": "x", field: value})
    assert record.values[cdr.FIELDS[[f.name for f in cdr.FIELDS].index(field)].column] == value


def test_a_decoded_record_with_a_lone_surrogate_encodes_and_is_refused_as_bad_json() -> None:
    """Import and backfill re-encode what Python's json decoded; a lone surrogate keeps its
    escape (no UnicodeEncodeError ending the run), and the body is then refused as bad JSON."""
    body = cdr.encode({"callId": "a\ud800", "intent": "转人工"})
    assert body == rb'{"callId":"a\ud800","intent":"\u8f6c\u4eba\u5de5"}'
    with pytest.raises(BadJson):
        cdr.parse(body)
    assert cdr.encode({"intent": "转人工"}) == b'{"intent":"' + "转人工".encode() + b'"}'


def test_every_problem_is_reported_at_once() -> None:
    """The sender learns about all bad fields in one reply, not one per retry."""
    with pytest.raises(InvalidRecord) as caught:
        cdr.to_record({"direction": 9, "answered": "?"})
    assert [p.field for p in caught.value.fields] == ["callId", "answered", "direction"]


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[1]", b'"x"', b"null", b"NaN", b"\xff", b"[" * 100_000]
)
def test_not_a_json_object_is_bad_json(body: bytes) -> None:
    """Anything that is not one JSON object is refused as bad JSON, never a crash."""
    with pytest.raises(BadJson):
        cdr.parse(body)


def test_content_hash_ignores_key_order_but_not_values() -> None:
    """Retries (same content) share a hash; corrections and new unknown fields do not."""
    a = cdr.content_hash({"callId": "1", "x": 1})
    assert a == cdr.content_hash({"x": 1, "callId": "1"})
    assert a != cdr.content_hash({"callId": "1", "x": 2})
    assert a != cdr.content_hash({"callId": "1", "x": 1, "new": None})


def test_a_record_is_identified_by_all_it_carries() -> None:
    """What a push is stored as (``parse``) changes identity with any field, known or not:
    NXCC may add a field before cdrhub models it, and its value must not be dropped as a
    retry."""
    base = {"callId": "h-1", "callDuration": 5}
    variants = [
        {**base, "newField": "x"},
        {**base, "newField": None},
        {**base, "newField": {"nested": [1]}},
        {**base, "newField": {"nested": [2]}},
        {**base, "callDuration": 6},
    ]
    hashes = [cdr.parse(msgspec.json.encode(v)).content_hash for v in [base, *variants]]
    assert len(set(hashes)) == len(hashes)
    spaced = b'{ "callDuration" : 5 ,\n "callId" : "h-1" }'  # a retry, written differently
    assert cdr.parse(spaced).content_hash == hashes[0]


def test_a_push_adding_an_unknown_field_is_a_new_version(push: Push, api: Api) -> None:
    """Same known fields plus one cdrhub does not model: ``updated``, with a second raw
    version that holds the field; resending it is a ``duplicate``; changing only that field's
    value (even deep inside it) is ``updated`` again. On both databases."""
    base = {"callId": "u-1", "callDuration": 5, "startTime": 1795510931000}
    sent = [
        (base, "created"),
        ({**base, "vendorNote": {"tier": "gold"}}, "updated"),
        ({"vendorNote": {"tier": "gold"}, **base}, "duplicate"),  # same content, other order
        ({**base, "vendorNote": {"tier": "silver"}}, "updated"),
    ]
    for body, expected in sent:
        assert push(body).json()["result"] == expected, body
    detail = api("/api/calls/u-1").json()
    bodies = [v["body"] for v in detail["raw_versions"]]
    assert bodies == [base, sent[1][0], sent[3][0]]
    assert [v["delivery_count"] for v in detail["raw_versions"]] == [1, 2, 1]
    assert detail["call_duration"] == 5


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)  # past float's and int64's range
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(deadline=None)  # a loaded CI machine must not turn a slow example into a failure
@given(
    st.dictionaries(
        st.sampled_from([f.name for f in cdr.FIELDS] + ["extra"]), json_values, max_size=10
    )
)
def test_any_object_is_accepted_or_precisely_refused(data: dict[str, Any]) -> None:
    """Arbitrary field values never crash: a typed record, or InvalidRecord with fields."""
    body = msgspec.json.encode(data)
    try:
        record = cdr.parse(body)
    except InvalidRecord as error:
        assert error.fields
        for problem in error.fields:
            assert problem.field in data or problem.field == "callId"
            msgspec.json.encode(problem.value)
        return
    assert record.call_id
    for column in cdr.TIME_COLUMNS:
        moment = record.values[column]
        assert moment is None or moment.tzinfo is UTC
    price = record.values["total_customer_price"]
    assert price is None or math.isfinite(price)


TIME_FIELDS = [f.name for f in cdr.FIELDS if f.column in cdr.TIME_COLUMNS]
DURATIONS = ["callDuration", "ringDuration", "queueDuration"]
FIRST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z, as docs/ingest.md states the range
END_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z, excluded


@pytest.mark.parametrize("field", TIME_FIELDS)
@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (FIRST_MS, True),
        (END_MS - 1, True),
        (FIRST_MS - 1, False),
        (END_MS, False),
        (1_691_372_191, False),  # epoch seconds sent as ms: January 1970
        (1_691_372_191_000_000, False),  # microseconds: year 55567
        (253_402_300_799_999, False),  # 9999-12-31: accepted before, then unreadable
        (str(END_MS), False),
    ],
)
def test_every_time_has_an_accepted_range(field: str, value: Any, accepted: bool) -> None:
    """A time is an instant of a call: 2000 to 2099; outside, a 422 that says the range."""
    data = {"callId": "x", field: value}
    if accepted:
        assert cdr.to_record(data).values[_column(field) + "_ms"] == int(value)
        return
    with pytest.raises(InvalidRecord) as caught:
        cdr.to_record(data)
    [problem] = caught.value.fields
    assert (problem.field, problem.value) == (field, value)
    assert "946684800000 (2000-01-01" in problem.expected
    assert "4102444799999 (2099-12-31" in problem.expected


def _column(name: str) -> str:
    return next(f.column for f in cdr.FIELDS if f.name == name)


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        *((d, 31 * 86_400, True) for d in DURATIONS),
        *((d, 31 * 86_400 + 1, False) for d in DURATIONS),
        *((d, 2**31 - 1, False) for d in DURATIONS),
        ("totalCustomerPrice", 1_000_000_000, True),
        ("totalCustomerPrice", -1_000_000_000.0, True),
        ("totalCustomerPrice", 1_000_000_000.5, False),
        ("totalCustomerPrice", "-1e10", False),
        ("totalCustomerPrice", 10**400, False),  # float() of it raises OverflowError
        ("totalCustomerPrice", 1.7976931348623157e308, False),
        ("hangupCode", 2**31 - 1, True),
        ("hangupCode", 2**31, False),
    ],
)
def test_every_number_has_an_accepted_range(field: str, value: Any, accepted: bool) -> None:
    """Durations are 0 to 31 days, a cost at most a billion either way, a code 32 bits."""
    data = {"callId": "x", field: value}
    if accepted:
        assert cdr.to_record(data).values[_column(field)] == value
        return
    with pytest.raises(InvalidRecord) as caught:
        cdr.to_record(data)
    [problem] = caught.value.fields
    assert problem.field == field and problem.expected
    msgspec.json.encode(problem.value)


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def test_nesting_is_refused_past_what_readers_serialise() -> None:
    """Unknown fields nested 63 levels (64 with the call log) are kept; one more is a 422
    naming the field, so nothing is accepted that the API cannot show back."""
    assert cdr.depth(_nested(63)) == 63 and cdr.depth("x") == 0
    body = msgspec.json.encode({"callId": "x", "extra": _nested(63), "other": _nested(5)})
    assert cdr.parse(body).call_id == "x"
    for field in ("extra", "other"):
        with pytest.raises(InvalidRecord) as caught:
            cdr.parse(msgspec.json.encode({"callId": "x", field: _nested(64)}))
        [problem] = caught.value.fields
        assert problem.field == field and "63 levels" in problem.expected
        assert isinstance(problem.value, str) and len(problem.value) <= 201


def _lenient(data: dict[str, Any]) -> cdr.CallRecord | InvalidRecord:
    try:
        return cdr.to_record(data)
    except InvalidRecord as error:
        return error


# Values near every edge the fast path checks itself: blank and NUL text, 0 and the ends of
# the time range, durations, codes and choices, the price bound, over-long indexed text.
EDGE_VALUES: list[Any] = [
    None,
    "",
    " ",
    "\t\n",
    "a\x00b",
    "x" * cdr.MAX_INDEXED_CHARS,
    "x" * (cdr.MAX_INDEXED_CHARS + 1),
    " " * (cdr.MAX_INDEXED_CHARS + 1),
    "坐席",
    0,
    1,
    2,
    3,
    -1,
    True,
    False,
    0.0,
    1.0,
    1.5,
    "1",
    "0",
    "true",
    cdr.MIN_TIME_MS - 1,
    cdr.MIN_TIME_MS,
    cdr.END_TIME_MS - 1,
    cdr.END_TIME_MS,
    cdr.MAX_DURATION_S,
    cdr.MAX_DURATION_S + 1,
    2**31 - 1,
    2**31,
    -(2**31 - 1),
    -(2**31),
    cdr.MAX_PRICE,
    cdr.MAX_PRICE + 1,
    float(cdr.MAX_PRICE) + 0.5,
    -float(cdr.MAX_PRICE),
    1e308,
    10**30,
    {"a": 1},
    [1, "x"],
    [[[]]],
]
_deep: Any = 0
for _ in range(cdr.MAX_DEPTH):
    _deep = [_deep]
EDGE_VALUES.append(_deep)  # one level past what is accepted
edge_values = st.sampled_from(EDGE_VALUES)


def _typed(field: cdr.Field) -> st.SearchStrategy[Any]:
    """Values a field's converter takes exactly as they are (the fast path's own domain)."""
    convert = field.convert
    if field.column == "call_id":
        return st.text(min_size=1, max_size=20)
    if convert is cdr._boolean:
        return st.booleans()
    if convert is cdr._money:
        return st.floats(-1e6, 1e6) | st.integers(-1000, 1000)
    if field.column in cdr.TIME_COLUMNS:
        return st.integers(cdr.MIN_TIME_MS, cdr.END_TIME_MS - 1) | st.just(0)
    if field.column in ("direction", "hangup_by"):
        return st.integers(0, 2)
    if convert in (cdr._seconds, cdr._code):
        return st.integers(0, 3600)
    return st.text(max_size=20)


well_typed = st.fixed_dictionaries(
    {"callId": st.text(min_size=1, max_size=20)},
    optional={f.name: _typed(f) for f in cdr.FIELDS if f.name != "callId"},
)


@settings(deadline=None, max_examples=500)
@given(
    well_typed,
    st.dictionaries(
        st.sampled_from([f.name for f in cdr.FIELDS] + ["extra"]),
        edge_values | json_values,
        max_size=2,
    ),
)
def test_the_fast_path_gives_the_lenient_answer(
    typed: dict[str, Any], sloppy: dict[str, Any]
) -> None:
    """cdr.parse takes well-typed pushes on a strict fast path. For any object (a well-typed
    one with one or two fields replaced by edge values or arbitrary JSON) its answer is
    to_record's: the same record (values and content hash), or the same refusal naming the
    same fields."""
    _assert_same_answer({**typed, **sloppy})


def _assert_same_answer(data: dict[str, Any]) -> None:
    body = msgspec.json.encode(data)
    expected = _lenient(msgspec.json.decode(body))
    try:
        got: cdr.CallRecord | InvalidRecord = cdr.parse(body)
    except InvalidRecord as error:
        got = error
    if isinstance(expected, InvalidRecord):
        assert isinstance(got, InvalidRecord)
        assert got.fields == expected.fields
    else:
        assert got == expected
    _assert_check_agrees(body)


def _assert_check_agrees(body: bytes) -> None:
    """cdr.check (what the push endpoint runs) gives parse's verdict: its callId, or the
    same refusal naming the same fields."""
    try:
        expected: str | BadJson | InvalidRecord = cdr.parse(body).call_id
    except (BadJson, InvalidRecord) as error:
        expected = error
    try:
        got: str | BadJson | InvalidRecord = cdr.check(body)
    except (BadJson, InvalidRecord) as error:
        got = error
    if isinstance(expected, str):
        assert got == expected
    else:
        assert type(got) is type(expected)
        assert got.body() == expected.body()


_FULL = {
    **cdr.VENDOR_EXAMPLE,
    "agentNickName": "坐席",
    "answered": True,
    "dtmfKeys": "1,2",
    "hangupBy": 1,
    "hangupCode": 16,
    "callStatus": "ANSWERED",
    "hangupReason": "用户挂断",
    "inQueueTime": 1691372191500,
    "leaveMsgUrl": "https://x/v.mp3",
    "outQueueTime": 1691372192000,
    "queueDuration": 1,
    "recordUrl": "https://x/r.mp3",
    "ringDuration": 1,
    "ringTime": 1691372191200,
    "totalCustomerPrice": 0.25,
}


@pytest.mark.parametrize("field", [f.name for f in cdr.FIELDS] + ["extra"])
def test_each_edge_value_of_each_field_gets_the_lenient_answer(field: str) -> None:
    """Every field of a complete, well-typed push replaced by each edge value in turn: the
    fast path and to_record agree on every one (the property test above samples these)."""
    assert len(_FULL) == len(cdr.FIELDS)
    for value in EDGE_VALUES:
        _assert_same_answer({**_FULL, field: value})
        _assert_same_answer({**_FULL, field: {"deep": value}})


def test_well_typed_pushes_take_the_fast_path() -> None:
    """The vendor's example and the realistic benchmark body are taken without coercion (the
    speed of every push depends on it), and a value sent as a string is not."""

    def fast(data: dict[str, Any]) -> cdr.CallRecord | None:
        return cdr._strict_record(data, msgspec.json.encode(data))

    assert fast(dict(cdr.VENDOR_EXAMPLE)) == cdr.to_record(cdr.VENDOR_EXAMPLE)
    assert fast(dict(_FULL)) == cdr.to_record(_FULL)
    assert fast({**cdr.VENDOR_EXAMPLE, "direction": "2"}) is None
    assert fast({**cdr.VENDOR_EXAMPLE, "answerTime": 0, "other": ""}) is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"callId":"a","callId":"b"}',
        b'{"callId":"a","direction":"x","direction":1}',
        b'{"callId":"a","direction":1,"direction":"x"}',
        b'{"callId":"  "}',
        b'{"callId":""}',
        b'{"callId":null}',
        b'{"callId":"a","startTime":1}',
        b'{"callId":"a","startTime":0}',
        b'{"callId":"a\\u0000"}',
        b'{"callId":"a","other":"{\\"x\\":[1]}"}',
        b'{"callId":"a","extra":{"b":[1,{"c":2}]}}',
        b'{"callId":"a"',
        b'["callId"]',
        b'{"callId":"a","answered":1}',
        b'{"callId":"a","totalCustomerPrice":1}',
        b'{"callId":"a","hangupCode":2147483648}',
        b"\xff",
        b"",
    ],
)
def test_check_gives_parse_verdict_on_edge_bodies(body: bytes) -> None:
    """Bodies the struct decode reads differently from a dict (repeated keys, the last one
    winning), blank or missing callIds, out-of-range times, NULs, nesting and bad JSON: the
    endpoint's cdr.check answers exactly as cdr.parse does."""
    _assert_check_agrees(body)


def test_check_takes_the_benchmark_body_without_building_a_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A realistic well-typed push is checked without cdr.parse (the speed of every push
    depends on it); one with a value sent as a string falls back to parse."""
    calls: list[bytes] = []
    real = cdr.parse
    monkeypatch.setattr(cdr, "parse", lambda body: calls.append(body) or real(body))
    assert cdr.check(msgspec.json.encode(_FULL)) == _FULL["callId"]
    assert calls == []
    sloppy = msgspec.json.encode({**_FULL, "direction": "2"})
    assert cdr.check(sloppy) == _FULL["callId"]
    assert calls == [sloppy]
