"""Finding calls: the filters every read endpoint shares, and cursor-paged listing.

One parser (:func:`parse_filters`) turns raw parameter strings into a :class:`CallFilter` for
the HTTP API and the CLI alike, and names the parameter in every error. The filter becomes
SQLAlchemy expressions with bound parameters only: no value ever reaches SQL text.

Paging is keyset, on (start time, callId): a cursor names the last call seen, so inserts
while someone pages neither repeat nor skip rows, and no page costs an OFFSET scan.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, ColumnElement, Select, func, literal, or_, select, tuple_
from starlette.convertors import Convertor, register_url_convertor

from cdrhub.cdr import DIRECTIONS, HANGUP_BY, MAX_DEPTH, depth
from cdrhub.errors import FieldProblem, InvalidParameter
from cdrhub.reports import zones
from cdrhub.store import Store
from cdrhub.store.schema import UTCDateTime, calls, raw_pushes


@dataclass(frozen=True, slots=True)
class Param:
    """A query parameter: its name (the same in the API and as a CLI option) and its doc."""

    name: str
    doc: str


#: The filters of ``/api/calls``, ``/api/stats``, ``/api/export`` and their CLI commands.
FILTERS: tuple[Param, ...] = (
    Param(
        "from",
        "Calls that started at or after this: ISO 8601 (`2026-11-24`, `2026-11-24T08:00`; "
        "without an offset it is in the time zone `tz`) or epoch milliseconds.",
    ),
    Param("to", "Calls that started before this (exclusive); same forms as `from`."),
    Param("direction", "0 or inbound, 1 or outbound, 2 or AICC."),
    Param("answered", "true or false."),
    Param("agent", "Agent account (`agentName`), exact."),
    Param("caller", "Calling number, exact."),
    Param("caller_prefix", "Calling number starting with this."),
    Param("callee", "Called number or SIP URI, exact."),
    Param("callee_prefix", "Called number starting with this."),
    Param("task_id", "AICC task id (`taskId`), exact."),
    Param("order_id", "Your own id for the call (`orderId`), exact."),
    Param("intent", "AI intent name, exact."),
    Param("hangup_by", "0 or agent, 1 or user, 2 or unknown."),
    Param("hangup_reason", "Hangup reason text, exact."),
    Param("call_status", "Call status text, exact."),
    Param("has_recording", "true: calls with a recording URL; false: without."),
)
TZ_PARAM = Param(
    "tz",
    "IANA time zone for times without an offset and for the times in the answer "
    "(default: the configured `CDRHUB_TIMEZONE`).",
)
FILTER_NAMES = frozenset(p.name for p in FILTERS)

MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
Order = Literal["asc", "desc"]

_EQUALS = {
    "agent": calls.c.agent_name,
    "caller": calls.c.caller,
    "callee": calls.c.callee,
    "task_id": calls.c.task_id,
    "order_id": calls.c.order_id,
    "intent": calls.c.intent,
    "hangup_reason": calls.c.hangup_reason,
    "call_status": calls.c.call_status,
}
_PREFIXES = {"caller_prefix": calls.c.caller, "callee_prefix": calls.c.callee}
_CHOICES = {
    "direction": (calls.c.direction, DIRECTIONS),
    "hangup_by": (calls.c.hangup_by, HANGUP_BY),
}


@dataclass(frozen=True, slots=True)
class CallFilter:
    """Which calls: a start-time range ``[start, end)`` and exact-value conditions."""

    start: datetime | None = None
    end: datetime | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def conditions(self) -> list[ColumnElement[bool]]:
        """The WHERE clause, as bound-parameter expressions."""
        where: list[ColumnElement[bool]] = []
        if self.start is not None:
            where.append(calls.c.start_time >= self.start)
        if self.end is not None:
            where.append(calls.c.start_time < self.end)
        for name, value in self.values.items():
            if name in _EQUALS:
                where.append(_EQUALS[name] == value)
            elif name in _PREFIXES:
                # substr, not LIKE: exact and case-sensitive on both databases, no wildcards
                # to escape in a number such as "1001_2".
                column = _PREFIXES[name]
                where.append(func.substr(column, 1, len(value)) == value)
            elif name in _CHOICES:
                where.append(_CHOICES[name][0] == value)
            elif name == "answered":
                where.append(calls.c.answered.is_(True) if value else _not_true(calls.c.answered))
            elif name == "has_recording":
                column = calls.c.record_url
                where.append(column.is_not(None) if value else column.is_(None))
        return where


def _not_true(column: Any) -> ColumnElement[bool]:
    """Unanswered includes calls whose ``answered`` is missing (the stats count them so too)."""
    return (column.is_(False)) | (column.is_(None))


def zone(name: str, param: str = "tz") -> ZoneInfo:
    """A time zone by IANA name, or a 422 naming the parameter."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid(param, name, "an IANA time zone such as Asia/Shanghai") from None


def parse_time(value: str, tz: ZoneInfo, param: str) -> datetime:
    """Epoch milliseconds, or ISO 8601 (local to ``tz`` when it has no offset), as UTC."""
    text = value.strip()
    try:
        if re.fullmatch(r"\d{1,15}", text):
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(text))
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=tz)
        return moment.astimezone(UTC)
    except ValueError:
        raise _invalid(
            param, value, "ISO 8601 (2026-11-24 or 2026-11-24T08:00:00+08:00) or epoch ms"
        ) from None
    except OverflowError:  # past year 9999 in UTC (epoch ms, or a date and a zone at the edge)
        raise _invalid(param, value, "a time between the years 1 and 9999") from None


def parse_bool(value: str, param: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no)."""
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise _invalid(param, value, "true or false")


def _choice(value: str, allowed: dict[int, str], param: str) -> int:
    text = value.strip()
    for number, name in allowed.items():
        if text == str(number) or text.lower() == name.lower():
            return number
    expected = ", ".join(f"{k} or {v}" for k, v in allowed.items())
    raise _invalid(param, value, expected)


def parse_filters(raw: Mapping[str, str | None], tz: ZoneInfo) -> CallFilter:
    """Build a filter from parameter strings (absent or empty = no condition)."""
    given = {k: v for k, v in raw.items() if k in FILTER_NAMES and v not in (None, "")}
    start = parse_time(given["from"], tz, "from") if "from" in given else None
    end = parse_time(given["to"], tz, "to") if "to" in given else None
    if start is not None and end is not None and end < start:
        raise _invalid("to", given["to"], "a time after `from`")
    values: dict[str, Any] = {}
    for name, text in given.items():
        assert text is not None
        if name in ("from", "to"):
            continue
        if name in _CHOICES:
            values[name] = _choice(text, _CHOICES[name][1], name)
        elif name in ("answered", "has_recording"):
            values[name] = parse_bool(text, name)
        else:
            values[name] = text
    return CallFilter(start, end, values)


def reject_unknown(params: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """A misspelt parameter (``agentName=``) is a 422, not a silently unfiltered answer."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidParameter(
            f"unknown parameter {unknown[0]!r}",
            [
                FieldProblem(name, params[name], "one of " + ", ".join(sorted(allowed)))
                for name in unknown
            ],
        )


def one_id(values: Sequence[str], param: str = "id") -> str:
    """The one callId a request names by ``param``, or a 422: none, an empty one, or several
    (answering one of them would be a guess)."""
    if len(values) != 1 or not values[0]:
        shown: Any = values[0] if len(values) == 1 else list(values)
        raise _invalid(param, shown, "exactly one callId")
    return values[0]


def _invalid(param: str, value: Any, expected: str) -> InvalidParameter:
    return InvalidParameter(f"invalid value for {param}", [FieldProblem(param, value, expected)])


# -- rows as the API shows them ---------------------------------------------------------------

_TIME_COLUMNS = frozenset(c.name for c in calls.columns if isinstance(c.type, UTCDateTime))
#: Call times with an ``_ms`` twin: shown from the twin, exactly as stored.
_TWINNED = frozenset(name for name in _TIME_COLUMNS if f"{name}_ms" in calls.c)
#: What a listed or opened call is read as: every column but the call times' timestamps,
#: which the ``_ms`` twins say exactly. A stored timestamp past year 9999 (PostgreSQL holds
#: them; old versions and migrations wrote them) cannot even be fetched into Python.
READ_COLUMNS = tuple(c for c in calls.columns if c.name not in _TWINNED)
_ORDER = tuple(c.name for c in calls.columns)


def to_item(
    row: Mapping[str, Any], tz: ZoneInfo, iso: Callable[[int | None], str | None] | None = None
) -> dict[str, Any]:
    """A call row as JSON-ready values, in table order: times ISO 8601 in ``tz`` (the ``_ms``
    columns stay), or null for a stored time that has no date in ``tz`` (years 1 to 9999).

    ``iso`` is a :func:`zones.iso_times` of ``tz`` shared across the rows of one answer.
    """
    text = iso or zones.iso_times(tz)
    item = dict(row)
    for name in _TWINNED:
        item[name] = text(item.get(f"{name}_ms"))
    for name in _TIME_COLUMNS - _TWINNED:  # bookkeeping: written by cdrhub, from its clock
        value = item.get(name)
        if value is not None:
            item[name] = text((value - _EPOCH) // timedelta(milliseconds=1))
    return {name: item[name] for name in _ORDER if name in item}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# -- paging -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One page of calls and the cursor for the next (None on the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def _encode_cursor(order: Order, row: Mapping[str, Any], timed: bool) -> str:
    ms = row["start_time_ms"] if timed else None
    data = json.dumps([order, ms, row["call_id"]], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, order: Order) -> tuple[int | None, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        kind, ms, call_id = data
        if kind not in ("asc", "desc") or not isinstance(call_id, str):
            raise ValueError
        if ms is not None and (isinstance(ms, bool) or not isinstance(ms, int)):
            raise ValueError
        if ms is not None:
            _from_ms(ms)  # a time that exists, or OverflowError
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        raise _invalid("cursor", cursor, "a next_cursor value from a previous page") from None
    if kind != order:
        raise _invalid("cursor", cursor, f"a cursor from a page sorted {order}")
    return ms, call_id


def list_calls(
    store: Store,
    where: CallFilter,
    tz: ZoneInfo,
    *,
    limit: int = DEFAULT_LIMIT,
    order: Order = "desc",
    cursor: str | None = None,
) -> Page:
    """One page of calls, sorted by start time (then callId); calls without one come last.

    Two index-friendly queries instead of one with NULL ordering, whose rules differ between
    SQLite and PostgreSQL: the timed calls, then (only once they run out) the untimed ones.
    A start no ``datetime`` holds (PostgreSQL keeps times past year 9999, which a migration
    or a hand-written row can leave) counts as untimed: a cursor could not name it.
    """
    after = _decode_cursor(cursor, order) if cursor else None
    desc = order == "desc"
    base = select(*READ_COLUMNS).where(*where.conditions())
    rows: list[Mapping[str, Any]] = []
    start = calls.c.start_time
    with store.read_engine.connect() as conn:
        if after is None or after[0] is not None:
            timed = base.where(start.between(_FIRST, _LAST))
            if after is not None:
                key = tuple_(start, calls.c.call_id)
                mark = tuple_(literal(_from_ms(after[0]), UTCDateTime()), literal(after[1]))
                timed = timed.where(key < mark if desc else key > mark)
            rows.extend(conn.execute(_ordered(timed, desc).limit(limit + 1)).mappings())
        timed_rows = len(rows)
        if len(rows) <= limit:
            # Under a time filter, only starts past the calendar can match here.
            untimed = base.where(or_(start.is_(None), start < _FIRST, start > _LAST))
            if after is not None and after[0] is None:
                untimed = untimed.where(
                    calls.c.call_id < after[1] if desc else calls.c.call_id > after[1]
                )
            ids = calls.c.call_id.desc() if desc else calls.c.call_id.asc()
            query = untimed.order_by(ids).limit(limit + 1 - len(rows))
            rows.extend(conn.execute(query).mappings())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = _encode_cursor(order, rows[-1], len(rows) <= timed_rows) if more else None
    iso = zones.iso_times(tz)
    return Page([to_item(r, tz, iso) for r in rows], next_cursor)


#: The starts a keyset cursor can name (all a ``datetime`` holds).
_FIRST = datetime(1, 1, 1, tzinfo=UTC)
_LAST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def _ordered(query: Select[Any], desc: bool) -> Select[Any]:
    if desc:
        return query.order_by(calls.c.start_time.desc(), calls.c.call_id.desc())
    return query.order_by(calls.c.start_time.asc(), calls.c.call_id.asc())


def _from_ms(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def iter_calls(
    store: Store, where: CallFilter, *, batch: int = 5000
) -> Iterator[list[Sequence[Any]]]:
    """Every matching call in start-time order, in batches of plain driver rows, for exports.

    Constant memory (a server-side cursor on PostgreSQL, SQLite's own stepping cursor). Rows
    hold :data:`EXPORT_COLUMNS` with every time as epoch ms, exactly as stored, and come
    straight from the driver (booleans may be 0/1 on SQLite): building datetimes and result
    rows was most of an export's time. On SQLite, calls that started in the same millisecond
    keep their arrival order (the index's own order; a callId tiebreak doubled the cost).
    """
    query = select(*_export_columns(store.kind)).where(*where.conditions())
    if store.kind == "sqlite":
        query = query.order_by(calls.c.start_time)
    else:
        query = _ordered(query, desc=False)
    with store.read_engine.connect() as conn:
        if store.kind != "sqlite":
            streamed = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
            yield from streamed.partitions()
            return
        # sqlite3 steps its cursor lazily: rows straight from it, no result rows built.
        cursor = conn.execute(query).cursor
        while rows := cursor.fetchmany(batch):
            yield rows


#: The columns of an export, in table order.
EXPORT_COLUMNS: tuple[str, ...] = tuple(c.name for c in calls.columns)


def _export_columns(kind: str) -> list[ColumnElement[Any]]:
    """Each column of ``calls``, times as epoch ms (the ``_ms`` twin where there is one)."""
    out: list[ColumnElement[Any]] = []
    for column in calls.columns:
        if column.name not in _TIME_COLUMNS:
            out.append(column)
        elif f"{column.name}_ms" in calls.c:
            out.append(calls.c[f"{column.name}_ms"])
        elif kind == "sqlite":  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC)
            seconds = func.cast(func.strftime("%s", column), BigInteger)
            millis = func.cast(func.substr(column, 21, 3), BigInteger)
            out.append(seconds * 1000 + millis)
        else:
            out.append(func.cast(func.floor(func.extract("epoch", column) * 1000), BigInteger))
    return out


def count_calls(store: Store, where: CallFilter) -> int:
    """How many calls match (the export's progress bar total)."""
    query = select(func.count()).select_from(calls).where(*where.conditions())
    with store.read_engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def get_call(store: Store, call_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """A call's row and its raw versions (oldest first), or None."""
    with store.read_engine.connect() as conn:
        query = select(*READ_COLUMNS).where(calls.c.call_id == call_id)
        row = conn.execute(query).mappings().first()
        if row is None:
            return None
        versions = conn.execute(
            select(raw_pushes).where(raw_pushes.c.call_id == call_id).order_by(raw_pushes.c.id)
        ).mappings()
        return dict(row), [dict(v) for v in versions]


def raw_version_item(version: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """A raw body as the API shows it: parsed JSON when it is JSON, else the text."""
    body: bytes = bytes(version["body"])
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = body.decode("utf-8", errors="replace")
    if depth(payload) > MAX_DEPTH:
        # Kept by a version before the depth limit: shown as its text, which any JSON encoder
        # writes (nested values past ~250 levels make the response encoder fail).
        payload = body.decode("utf-8", errors="replace")
    received = version["received_at"]
    return {
        "content_hash": version["content_hash"],
        "source": version["source"],
        "received_at": zones.iso_times(tz)((received - _EPOCH) // timedelta(milliseconds=1)),
        "delivery_count": version["delivery_count"],
        "body": payload,
    }


def parse_limit(value: str | None) -> int:
    """Page size: 1 or more, capped at :data:`MAX_LIMIT`."""
    if value in (None, ""):
        return DEFAULT_LIMIT
    assert value is not None
    if not re.fullmatch(r"\s*\d{1,9}\s*", value) or int(value) < 1:
        raise _invalid("limit", value, f"a whole number from 1 (at most {MAX_LIMIT} are returned)")
    return min(int(value), MAX_LIMIT)


def parse_order(value: str | None) -> Order:
    """``desc`` (newest first, the default) or ``asc``."""
    if value in (None, "", "desc"):
        return "desc"
    if value == "asc":
        return "asc"
    raise _invalid("order", value, "asc or desc")


# -- a call's address in a URL (the API's and the dashboard's) ----------------------------------


class CallIdConvertor(Convertor[str]):
    """A path parameter that is the whole rest of the path, any character included.

    Starlette's ``str`` stops at ``/`` and its ``path`` (``.*``) stops at a newline; worse,
    ``$`` then matches before a trailing one, so ``/calls/x%0A`` would open the call ``x``.
    A callId is any text NXCC sent, so the route takes everything after its prefix.
    """

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


def call_id_path(prefix: str) -> str:
    """``prefix`` + a callId path parameter that takes any text (see :class:`CallIdConvertor`).

    Declare it after every fixed route under ``prefix``: the first matching route wins, so a
    callId equal to a fixed route's name is reached by the ``?id=`` form instead.
    """
    register_url_convertor("call_id", CallIdConvertor())  # the same one each time: idempotent
    return prefix + "{call_id:call_id}"
