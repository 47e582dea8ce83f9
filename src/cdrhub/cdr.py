"""The NXCC call log: its 28 fields, and turning a pushed JSON object into typed columns.

Lenient where real senders are sloppy: ``null``, a missing key and ``""`` all mean absent,
numbers may arrive as strings (``"direction": "2"``), and keys we do not know are simply not
columns (the raw body keeps them). Strict where a wrong guess would corrupt statistics: a
value that cannot be its field's type is reported with the field, the value and what was
expected, every problem at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from cdrhub.errors import BadJson, FieldProblem, InvalidRecord

#: The vendor's own push example, used by ``cdrhub send`` and the docs.
VENDOR_EXAMPLE: dict[str, Any] = {
    "agentName": "agent@example.com",
    "answerTime": 1691372192000,
    "callDuration": 7,
    "callId": "b1920376-5e15-4f22-9996-6233f297685e",
    "callee": "1001@10.0.0.1:5060",
    "caller": "85235757581",
    "direction": 2,
    "endTime": 1691372213000,
    "intent": "转人工-成功",
    "orderId": "ORDER_ID",
    "other": "OTHER",
    "startTime": 1691372191000,
    "taskId": "1688363452814331904",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32_MAX = 2**31 - 1
#: The longest value of a field the database indexes (callId, caller, callee). PostgreSQL
#: refuses an index entry over 2704 bytes, and it refuses it inside the commit, where it looks
#: like an outage and would hold every later push in the spool behind it. 512 characters are
#: at most 2048 bytes of UTF-8: far above any real id or SIP URI, well inside the limit.
MAX_INDEXED_CHARS = 512

# -- the accepted ranges (docs/ingest.md, "Accepted ranges") --------------------------------------
# A value outside its range is not a call that happened: it is refused (422, quarantined) instead
# of stored, where it would be shown, summed and bucketed by every reader as if it were one.

#: Times: 2000-01-01T00:00:00Z (inclusive) to 2100-01-01T00:00:00Z (exclusive). NXCC's cloud
#: call center is far younger than 2000, so an earlier time is a sender's unit error: epoch
#: *seconds* read as ms land in January 1970. Microseconds read as ms land after year 50000,
#: past the end. Every reader can show any instant in between in any zone.
MIN_TIME_MS = 946_684_800_000
END_TIME_MS = 4_102_444_800_000
#: Durations: 0 to 31 days in whole seconds. No call a call center carries lasts longer (session
#: timers end calls within hours); a bigger value is a unit error that would swamp every mean.
MAX_DURATION_S = 31 * 86_400
#: Cost: at most a billion in either direction (a credit can be negative). Micro-units of such
#: a cost stay below 2**53, so statistics sum them exactly in floating point.
MAX_PRICE = 1_000_000_000
#: Nesting of the call log object (the object itself is level 1): real pushes are flat, and a
#: body nested deeper than readers can serialise back would be accepted but never readable.
MAX_DEPTH = 64


class _Blank(Exception):
    """A value that is only whitespace: absent, like null and ""."""


class _Bad(Exception):
    """Raised by a converter; carries the human description of what was expected."""

    def __init__(self, expected: str) -> None:
        self.expected = expected


def _integer(value: Any, expected: str) -> int:
    """An int from an int, an integral float or a numeric string; bools are not numbers."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isspace():
        raise _Blank
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise _Bad(expected) from None
            if math.isfinite(number) and number.is_integer():
                return int(number)
    raise _Bad(expected)


def _text(value: Any) -> str | None:
    if type(value) is str:
        if value.isspace():
            return None
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Ids such as taskId are sometimes sent as JSON numbers; keep their digits.
        try:
            text = str(value)
        except ValueError:  # more digits than Python prints (sys.get_int_max_str_digits)
            raise _Bad("a string") from None
    else:
        raise _Bad("a string")
    if "\x00" in text:
        # PostgreSQL text cannot hold NUL; refusing keeps both databases identical.
        raise _Bad("a string without NUL characters")
    return text


def _indexed_text(value: Any) -> str | None:
    """Text the database indexes: at most :data:`MAX_INDEXED_CHARS` characters."""
    text = _text(value)
    if text is not None and len(text) > MAX_INDEXED_CHARS:
        raise _Bad(f"a string of at most {MAX_INDEXED_CHARS} characters")
    return text


def _pass_through(value: Any) -> str | None:
    """``other`` is the customer's pass-through data; a JSON object/array is kept as JSON text."""
    if isinstance(value, dict | list):
        return _text(msgspec.json.encode(value).decode())
    return _text(value)


def _boolean(value: Any) -> bool:
    if value is True or value is False:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            raise _Blank
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    raise _Bad("true or false")


def _epoch_ms(value: Any) -> int | None:
    ms = _integer(value, _EPOCH_EXPECTED)
    if ms == 0:
        # Senders use 0 for "did not happen" (answerTime of an unanswered call): absent.
        return None
    if not MIN_TIME_MS <= ms < END_TIME_MS:
        raise _Bad(_EPOCH_EXPECTED)
    return ms


_EPOCH_EXPECTED = (
    f"epoch milliseconds from {MIN_TIME_MS} (2000-01-01T00:00:00Z) to {END_TIME_MS - 1} "
    "(2099-12-31T23:59:59.999Z), or 0 for none"
)
_SECONDS_EXPECTED = f"whole seconds from 0 to {MAX_DURATION_S} (31 days)"


def _seconds(value: Any) -> int:
    number = _integer(value, _SECONDS_EXPECTED)
    if not 0 <= number <= MAX_DURATION_S:
        raise _Bad(_SECONDS_EXPECTED)
    return number


def _code(value: Any) -> int:
    number = _integer(value, "a whole number")
    if not -_INT32_MAX <= number <= _INT32_MAX:
        raise _Bad("a whole number that fits 32 bits")
    return number


def _choice(allowed: dict[int, str]) -> Callable[[Any], int]:
    expected = ", ".join(f"{k} ({v})" for k, v in allowed.items())

    def convert(value: Any) -> int:
        number = _integer(value, f"one of {expected}")
        if number not in allowed:
            raise _Bad(f"one of {expected}")
        return number

    return convert


def _money(value: Any) -> float:
    if type(value) is int:
        # float() of a 400-digit integer raises OverflowError: compare exactly first.
        if abs(value) > MAX_PRICE:
            raise _Bad(_PRICE_EXPECTED)
        return float(value)
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        if value.isspace():
            raise _Blank
        try:
            number = float(value.strip())
        except ValueError:
            raise _Bad(_PRICE_EXPECTED) from None
    else:
        raise _Bad(_PRICE_EXPECTED)
    if not (math.isfinite(number) and abs(number) <= MAX_PRICE):
        raise _Bad(_PRICE_EXPECTED)
    return number


_PRICE_EXPECTED = f"a number from -{MAX_PRICE} to {MAX_PRICE}"


DIRECTIONS = {0: "inbound", 1: "outbound", 2: "AICC"}
HANGUP_BY = {0: "agent", 1: "user", 2: "unknown"}


@dataclass(frozen=True, slots=True)
class Field:
    """One payload field: its NXCC name, its column, its converter and its meaning."""

    name: str
    column: str
    convert: Callable[[Any], Any]
    doc: str


#: Every field of the vendor's table, in its order: 28 (NXCC.md counts 27, the seed lists 28).
#: Timestamps also get a column ``<column>_ms`` with the epoch milliseconds as sent.
FIELDS: tuple[Field, ...] = (
    Field("agentName", "agent_name", _text, "agent account, often an e-mail"),
    Field("agentNickName", "agent_nick_name", _text, "agent nickname"),
    Field("answered", "answered", _boolean, "whether the call was answered"),
    Field("answerTime", "answer_time", _epoch_ms, "when the call was answered"),
    Field("callDuration", "call_duration", _seconds, "call duration in seconds, as sent"),
    Field("callee", "callee", _indexed_text, "called number or SIP URI"),
    Field("caller", "caller", _indexed_text, "calling number"),
    Field("callId", "call_id", _indexed_text, "the call's id: the identity of a record"),
    Field("direction", "direction", _choice(DIRECTIONS), "0 inbound, 1 outbound, 2 AICC"),
    Field("dtmfKeys", "dtmf_keys", _text, "keys pressed, comma-separated"),
    Field("endTime", "end_time", _epoch_ms, "when the call ended"),
    Field("hangupBy", "hangup_by", _choice(HANGUP_BY), "0 agent, 1 user, 2 unknown"),
    Field("hangupCode", "hangup_code", _code, "hangup reason code"),
    Field("callStatus", "call_status", _text, "call status"),
    Field("hangupReason", "hangup_reason", _text, "hangup reason description"),
    Field("inQueueTime", "in_queue_time", _epoch_ms, "when the call entered a queue"),
    Field("leaveMsgUrl", "leave_msg_url", _text, "voicemail URL"),
    Field("orderId", "order_id", _text, "the customer's own id for the call"),
    Field("other", "other", _pass_through, "pass-through data from the customer"),
    Field("intent", "intent", _text, "AI intent name"),
    Field("outQueueTime", "out_queue_time", _epoch_ms, "when the call left the queue"),
    Field("queueDuration", "queue_duration", _seconds, "seconds in queue"),
    Field("recordUrl", "record_url", _text, "recording URL"),
    Field("ringDuration", "ring_duration", _seconds, "seconds ringing"),
    Field("ringTime", "ring_time", _epoch_ms, "when the call started ringing"),
    Field("startTime", "start_time", _epoch_ms, "when the call started"),
    Field("taskId", "task_id", _text, "AICC task id (direction 2)"),
    Field("totalCustomerPrice", "total_customer_price", _money, "cost of the call"),
)
TIME_COLUMNS = tuple(f.column for f in FIELDS if f.convert is _epoch_ms)
_CONVERSIONS = tuple((f.name, f.column, f.convert) for f in FIELDS)
_TIME_PAIRS = tuple((c, f"{c}_ms") for c in TIME_COLUMNS)
#: Every typed column a call row has, in a stable order.
COLUMNS: tuple[str, ...] = tuple(f.column for f in FIELDS) + tuple(f"{c}_ms" for c in TIME_COLUMNS)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A push that passed validation: typed column values plus what identifies its content."""

    call_id: str
    values: dict[str, Any]
    content_hash: str


def decode(body: bytes) -> dict[str, Any]:
    """Parse a push body into a JSON object, or raise :class:`BadJson` saying what is wrong."""
    try:
        data = msgspec.json.decode(body)
    except (msgspec.MsgspecError, UnicodeDecodeError) as exc:
        raise BadJson(f"body is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise BadJson("body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadJson(f"body must be a JSON object (one call log), got a JSON {_kind(data)}")
    return data


def _kind(data: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(data), "number"
    )


def to_record(data: dict[str, Any]) -> CallRecord:
    """Convert a decoded push into typed columns, or raise :class:`InvalidRecord`.

    This runs for every push, so it is a flat loop over precomputed (name, column, converter)
    triples rather than anything cleverer.
    """
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    get = data.get
    for name, column, convert in _CONVERSIONS:
        raw = get(name)
        if raw is None or raw == "":
            values[column] = None
            continue
        try:
            values[column] = convert(raw)
        except _Blank:
            values[column] = None
        except _Bad as bad:
            values[column] = None
            problems.append(FieldProblem(name, _echo(raw), bad.expected))
    if values["call_id"] is None and not any(p.field == "callId" for p in problems):
        problems.insert(0, FieldProblem("callId", _echo(get("callId")), "a non-empty string"))
    for name, raw in data.items():
        # Unknown fields are kept in the raw body, which the API and the call page show back:
        # what they cannot serialise must not be accepted (issue #12).
        if isinstance(raw, dict | list) and depth(raw) >= MAX_DEPTH:
            problems.append(FieldProblem(name, _echo(raw), _DEPTH_EXPECTED))
    if problems:
        names = ", ".join(p.field for p in problems)
        raise InvalidRecord(f"invalid value for {names}", problems)
    for column, ms_column in _TIME_PAIRS:
        ms = values[column]
        values[ms_column] = ms
        if ms is not None:
            values[column] = _EPOCH + timedelta(milliseconds=ms)
    return CallRecord(values["call_id"], values, content_hash(data))


_DEPTH_EXPECTED = f"a value nested at most {MAX_DEPTH - 1} levels deep"


def depth(value: Any) -> int:
    """How many levels of arrays and objects ``value`` has (a scalar: 0), without recursion:
    a hostile value is as deep as the JSON decoder allowed."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def parse(body: bytes) -> CallRecord:
    """Body bytes to a valid record: the whole validation a push goes through.

    Most pushes are already well typed (numbers as numbers, strings as strings), and for them
    :func:`_strict_record` gives the same record several times faster. Anything it does not
    take as it is (a number sent as a string, an empty string for a number, a value out of
    range, ...) goes through :func:`to_record`, which coerces what it can and names every
    problem. A test holds the two to the same answer for any input.
    """
    data = decode(body)
    return _strict_record(data, body) or to_record(data)


def check(body: bytes) -> str:
    """The callId of a body :func:`parse` accepts, or what :func:`parse` raises; no record built.

    The push endpoint needs only the verdict (200, or 400/422 and the quarantine) and the
    callId to answer with; the record itself is built where it is stored (the writer thread,
    or the journal's applier, which reads the body again anyway). For a well-typed push with
    no nested values this is one msgspec decode into a struct, checked in C, several times
    cheaper than building the record (12 us against 2 us, issue 15's profile). Anything it
    does not take as it is goes through :func:`parse` itself, so the answer is always
    ``parse``'s: ``tests/test_cdr.py`` holds the two to that.
    """
    # A nested value (only an unknown field can hold one) needs parse's depth check, and a
    # NUL needs its refusal: both are left to parse. "{" or "[" inside a string only means
    # the slower, same answer.
    if (
        body.count(b"{") == 1
        and b"[" not in body
        and b"\\u0000" not in body
        and b"\x00" not in body
    ):
        try:
            strict = msgspec.json.decode(body, type=_Strict)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            strict = None
        if strict is not None:
            call_id = strict.call_id
            if (
                call_id
                and not call_id.isspace()
                and all(ms is None or ms == 0 or ms >= MIN_TIME_MS for ms in _strict_times(strict))
            ):
                return call_id
    return parse(body).call_id


def _strict_type(field: Field) -> Any:
    """The JSON type (and range, checked by msgspec in C) a field's converter takes as it is.

    Only what needs Python is left to :func:`_strict_record`: blank and NUL text, and times
    (0 means none, and the accepted range does not include 1..MIN_TIME_MS).
    """
    convert = field.convert
    if convert is _boolean:
        return bool | None
    if convert is _money:  # msgspec takes a JSON integer for a float, as _money does
        return Annotated[float, msgspec.Meta(ge=-MAX_PRICE, le=MAX_PRICE)] | None
    if convert is _indexed_text:
        return Annotated[str, msgspec.Meta(max_length=MAX_INDEXED_CHARS)] | None
    if convert in (_text, _pass_through):
        return str | None
    if convert is _seconds:
        return Annotated[int, msgspec.Meta(ge=0, le=MAX_DURATION_S)] | None
    if convert is _code:
        return Annotated[int, msgspec.Meta(ge=-_INT32_MAX, le=_INT32_MAX)] | None
    choices = {"direction": DIRECTIONS, "hangup_by": HANGUP_BY}.get(field.column)
    if choices is not None:
        low, high = min(choices), max(choices)
        assert set(choices) == set(range(low, high + 1)), "choices must be contiguous"
        return Annotated[int, msgspec.Meta(ge=low, le=high)] | None
    assert convert is _epoch_ms, field
    return Annotated[int, msgspec.Meta(ge=0, lt=END_TIME_MS)] | None


#: The call log as msgspec converts it in C when every value already has its field's type.
_Strict = msgspec.defstruct(
    "_Strict",
    [(f.column, _strict_type(f), None) for f in FIELDS],
    rename={f.column: f.name for f in FIELDS},
)
_strict_times = operator.attrgetter(*TIME_COLUMNS)
_STRICT_TEXT = tuple(f.column for f in FIELDS if f.convert in (_text, _indexed_text, _pass_through))


_FIELD_NAMES = frozenset(f.name for f in FIELDS)


def _strict_record(data: dict[str, Any], body: bytes) -> CallRecord | None:
    """The record of a push whose every value has its field's exact type and range, else None.

    None means only "not on the fast path": :func:`to_record` then decides, coercing or
    refusing. So this may turn anything down, but must never accept what ``to_record`` would
    refuse, nor give a different value (``tests/test_cdr.py`` holds it to that). ``body`` is
    what ``data`` was decoded from: a NUL can only have come from a ``\\u0000`` in it.
    """
    if b"\\u0000" in body or b"\x00" in body:
        return None
    try:
        values = msgspec.structs.asdict(msgspec.convert(data, _Strict))
    except msgspec.ValidationError:
        return None
    for column in _STRICT_TEXT:
        text = values[column]
        if text is not None and (not text or text.isspace()):
            values[column] = None
    if values["call_id"] is None:
        return None
    for column, ms_column in _TIME_PAIRS:
        ms = values[column]
        if ms == 0:
            ms = values[column] = None
        elif ms is not None:
            if ms < MIN_TIME_MS:
                return None
            values[column] = _EPOCH + timedelta(0, 0, 0, ms)  # positional: the fastest form
        values[ms_column] = ms
    if not data.keys() <= _FIELD_NAMES:  # known fields are scalars here: check the others
        for name, raw in data.items():
            if name not in _FIELD_NAMES and isinstance(raw, dict | list):
                if depth(raw) >= MAX_DEPTH:
                    return None
    return CallRecord(values["call_id"], values, content_hash(data))


def encode(record: Any) -> bytes:
    """The body of a call log that arrived already decoded (an import file, NXCC's query API).

    Compact UTF-8 JSON, as a push would be. Python's ``json`` decodes a lone surrogate escape
    (``"\\ud800"``) that UTF-8 cannot carry; such a record keeps the escape, so it is refused
    as bad JSON and quarantined like any other, instead of ending the whole run.
    """
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(record, separators=(",", ":")).encode()


def content_hash(data: dict[str, Any]) -> str:
    """Identify a payload's content regardless of key order or whitespace.

    Retries resend identical content; corrections change it. Unknown keys count too, so a
    field we do not model yet still makes a new raw version when it changes.
    """
    canonical = msgspec.json.encode(data, order="sorted")
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()


def _echo(value: Any) -> Any:
    """The offending value as it can be shown back in an error (long values shortened)."""
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    if isinstance(value, dict | list):
        text = msgspec.json.encode(value).decode()
        return text if len(text) <= 200 else text[:200] + "…"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        try:
            return str(value)
        except ValueError:  # more digits than Python prints
            return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return value
