"""The destinations events are forwarded to: what a URL means, and adding, listing, changing.

The URL's scheme picks the kind (docs/forwarding.md has one section per kind)::

    https://host/path                    webhook, signed per Standard Webhooks
    https://host/path + format "nxcc"    relay: NXCC's own bytes and ``token`` header
    nats://host:4222/SUBJECT             NATS JetStream publish
    redis://host:6379/0?stream=NAME      Redis Streams XADD (``maxlen=N`` trims approximately)
    amqp://user:pass@host/vhost?exchange=X&routing_key=K    RabbitMQ, publisher confirms
    mqtt://host:1883/TOPIC               MQTT, QoS 1

Secrets (webhook secrets, relay tokens, passwords in URLs) are stored because they must be
sent, and never shown: :func:`masked_url` and :meth:`Destination.public` hide them.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

from sqlalchemy import delete, func, insert, select, update

from cdrhub.forward import filters
from cdrhub.store import Store
from cdrhub.store.schema import destinations, events, forward_pending

EVENT_TYPES = ("call.created", "call.updated")
KINDS = {
    "http": "webhook",
    "https": "webhook",
    "nats": "nats",
    "redis": "redis",
    "rediss": "redis",
    "amqp": "amqp",
    "amqps": "amqp",
    "mqtt": "mqtt",
    "mqtts": "mqtt",
}
FORMATS = ("standard", "nxcc")
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
_SECRET_QUERY = ("password", "pass", "token", "secret", "key", "apikey", "api_key")
DEFAULT_CONCURRENCY = {"webhook": 10, "relay": 10}
#: One attempt's limit; a delivery round (its sends start within 10 s) then always ends well
#: inside the deliverer's 120 s lease, so no other process takes over a round in flight.
MAX_TIMEOUT_SECONDS = 60


class DestinationError(ValueError):
    """A destination that cannot be added or changed as asked; the message says how to fix it.

    ``field`` names the option that is wrong (``url``, ``secret``, ...), for the HTTP API's
    ``fields``; None when it is no single option.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Destination:
    """One destination as stored (secrets included: use :meth:`public` to show it)."""

    id: int
    name: str
    url: str
    kind: str
    format: str
    secret: str | None
    previous_secret: str | None
    previous_secret_until_ms: int | None
    token: str | None
    events: tuple[str, ...]
    filter: str
    concurrency: int
    rate_per_second: float | None
    timeout_seconds: float
    state: str
    paused_reason: str | None
    cursor_seq: int
    created_at_ms: int
    last_success_at_ms: int | None
    last_error: str | None
    last_error_at_ms: int | None
    failing_since_ms: int | None

    @property
    def call_filter(self) -> filters.CallFilter:
        return filters.parse(self.filter)

    def signing_secrets(self, now_ms: int) -> list[str]:
        """The secrets to sign with now: the current one, and the previous during its grace."""
        found = [self.secret] if self.secret else []
        if self.previous_secret and (self.previous_secret_until_ms or 0) > now_ms:
            found.append(self.previous_secret)
        return found

    def public(self) -> dict[str, Any]:
        """What may be shown anywhere: secrets replaced by whether they are set."""
        shown = asdict(self)
        shown["url"] = masked_url(self.url)
        shown["events"] = list(self.events)
        shown["secret"] = "set" if self.secret else None
        shown["previous_secret"] = "set" if self.previous_secret else None
        shown["token"] = "set" if self.token else None
        shown["last_error"] = mask_text(self.last_error, self)
        return shown


def kind_of(url: str, fmt: str) -> str:
    """The kind a URL names (``relay`` for an http(s) URL in the ``nxcc`` format)."""
    try:
        scheme = urlsplit(url).scheme.lower()
        urlsplit(url).port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError as exc:
        raise DestinationError(f"not a URL: {exc}", field="url") from None
    if scheme not in KINDS:
        raise DestinationError(
            f"unsupported URL scheme {scheme!r}: use http(s)://, nats://, redis://, amqp:// "
            "or mqtt:// (see docs/forwarding.md)",
            field="url",
        )
    kind = KINDS[scheme]
    if fmt == "nxcc":
        if kind != "webhook":
            raise DestinationError(
                "--format nxcc relays to an http(s) receiver only", field="format"
            )
        return "relay"
    return kind


def check_url(url: str, kind: str) -> None:
    """Refuse a URL that lacks what its kind needs, saying what to add."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise DestinationError(f"{masked_url(url)}: the URL needs a host", field="url")
    query = parse_qs(parts.query)
    path = parts.path.lstrip("/")
    if kind == "nats" and not path:
        raise DestinationError(
            "a NATS destination needs a subject: nats://host:4222/SUBJECT", field="url"
        )
    if kind == "mqtt" and not path:
        raise DestinationError(
            "an MQTT destination needs a topic: mqtt://host:1883/TOPIC", field="url"
        )
    if kind == "redis" and not query.get("stream"):
        raise DestinationError(
            "a Redis destination needs a stream: redis://host:6379/0?stream=NAME", field="url"
        )
    if kind == "redis" and query.get("maxlen") and not query["maxlen"][0].isdigit():
        raise DestinationError(
            "redis maxlen must be a whole number, e.g. ?stream=calls&maxlen=100000", field="url"
        )
    if kind == "amqp" and not (query.get("exchange") or query.get("routing_key")):
        raise DestinationError(
            "a RabbitMQ destination needs an exchange and/or a routing key: "
            "amqp://user:pass@host:5672/vhost?exchange=X&routing_key=K",
            field="url",
        )


def masked_url(url: str) -> str:
    """The URL with any password and secret-like query values replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            key, sep, value = pair.partition("=")
            if key.lower() in _SECRET_QUERY and value:
                value = "***"
            pairs.append(f"{key}{sep}{value}")
        query = "&".join(pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def mask_text(text: str | None, destination: Destination) -> str | None:
    """``text`` (an error message, a response) with the destination's secrets taken out."""
    if text is None:
        return None
    for secret in (destination.secret, destination.previous_secret, destination.token):
        if secret:
            text = text.replace(secret, "***")
    parts = urlsplit(destination.url)
    # The URL holds the password percent-encoded; clients use it decoded: mask every spelling.
    hidden = {parts.password} if parts.password else set()
    for key, values in parse_qs(parts.query).items():
        if key.lower() in _SECRET_QUERY:
            hidden.update(values)  # parse_qs has decoded these already
    for secret in list(hidden):
        hidden |= {unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
    for secret in sorted(filter(None, hidden), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def check_secret(secret: str) -> str:
    """Accept ``whsec_<base64>`` (at least 24 bytes), as the spec's libraries expect."""
    if not secret.startswith(SECRET_PREFIX):
        raise DestinationError(
            "a webhook secret starts with whsec_ (omit --secret to generate one)", field="secret"
        )
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise DestinationError(
            "the webhook secret after whsec_ must be base64", field="secret"
        ) from None
    if len(key) < 24:
        raise DestinationError(
            "the webhook secret must hold at least 24 bytes (32 is usual)", field="secret"
        )
    return secret


def parse_events(text: str | None) -> tuple[str, ...]:
    """``call.created,call.updated`` -> a tuple; refuses unknown types."""
    chosen = tuple(e.strip() for e in (text or ",".join(EVENT_TYPES)).split(",") if e.strip())
    unknown = [e for e in chosen if e not in EVENT_TYPES]
    if unknown or not chosen:
        raise DestinationError(
            f"unknown event type {', '.join(unknown) or '(none)'}: choose from "
            + ", ".join(EVENT_TYPES),
            field="events",
        )
    return chosen


def _now_ms() -> int:
    return int(time.time() * 1000)


def _row(row: Any) -> Destination:
    values = dict(row)
    values["events"] = tuple(e for e in values["events"].split(",") if e)
    values.pop("lease_owner", None)
    values.pop("lease_until_ms", None)
    return Destination(**values)


def start_cursor(store: Store, start: str | int | None) -> int:
    """The cursor a new destination starts at: ``now`` (default), ``beginning``, or epoch ms."""
    with store.read_engine.connect() as conn:
        if start in (None, "now"):
            return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())
        if start == "beginning":
            return 0
        if isinstance(start, int):
            query = select(func.coalesce(func.max(events.c.seq), 0)).where(
                events.c.created_at_ms < start
            )
            return int(conn.execute(query).scalar_one())
    raise DestinationError(f"--from {start!r}: use now, beginning, or a date", field="from")


def add(
    store: Store,
    name: str,
    url: str,
    *,
    secret: str | None = None,
    fmt: str = "standard",
    token: str | None = None,
    event_types: str | None = None,
    call_filter: str | None = None,
    start: str | int | None = None,
    concurrency: int | None = None,
    rate_per_second: float | None = None,
    timeout_seconds: float = 10.0,
) -> tuple[Destination, str | None]:
    """Store a new destination. Returns it and the webhook secret when one was generated."""
    name = name.strip()
    if not name or any(c in name for c in "/\\ \t\n\r"):
        raise DestinationError("a destination name is one word, e.g. crm or tickets", field="name")
    if fmt not in FORMATS:
        raise DestinationError(f"--format {fmt!r}: choose standard or nxcc", field="format")
    kind = kind_of(url, fmt)
    check_url(url, kind)
    generated = None
    if kind == "webhook":
        if secret is None:
            secret = generated = new_secret()
        check_secret(secret)
    elif secret is not None:
        raise DestinationError(
            "--secret signs webhooks; this kind of destination has none", field="secret"
        )
    if kind == "relay" and not token:
        raise DestinationError(
            "a relay (--format nxcc) needs --token, the receiver's NXCC token", field="token"
        )
    if kind != "relay" and token:
        raise DestinationError("--token is for --format nxcc relays only", field="token")
    types = parse_events(event_types)
    try:
        parsed = filters.parse(call_filter)
    except filters.FilterError as exc:
        raise DestinationError(f"--filter: {exc}", field="filter") from None
    if concurrency is not None and not 1 <= concurrency <= 256:
        raise DestinationError("--concurrency must be between 1 and 256", field="concurrency")
    if rate_per_second is not None and rate_per_second <= 0:
        raise DestinationError(
            "--rate must be above 0 (events per second)", field="rate_per_second"
        )
    if not 0 < timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise DestinationError(
            f"--timeout must be between 0 and {MAX_TIMEOUT_SECONDS} seconds",
            field="timeout_seconds",
        )
    if get(store, name) is not None:
        raise DestinationError(
            f"a destination named {name!r} exists (cdrhub forward show {name})", field="name"
        )
    values = {
        "name": name,
        "url": url,
        "kind": kind,
        "format": fmt,
        "secret": secret,
        "previous_secret": None,
        "previous_secret_until_ms": None,
        "token": token,
        "events": ",".join(types),
        "filter": parsed.text,
        "concurrency": concurrency or DEFAULT_CONCURRENCY.get(kind, 32),
        "rate_per_second": rate_per_second,
        "timeout_seconds": timeout_seconds,
        "state": "active",
        "paused_reason": None,
        "cursor_seq": start_cursor(store, start),
        "created_at_ms": _now_ms(),
        "last_success_at_ms": None,
        "last_error": None,
        "last_error_at_ms": None,
        "failing_since_ms": None,
    }
    with store.writing() as conn:
        new_id = conn.execute(
            insert(destinations).values(values).returning(destinations.c.id)
        ).scalar_one()
    return Destination(id=int(new_id), **{**values, "events": types}), generated


def all_destinations(store: Store) -> list[Destination]:
    """Every destination, by name."""
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(destinations).order_by(destinations.c.name)).mappings()
        return [_row(r) for r in rows]


def get(store: Store, name: str) -> Destination | None:
    """The destination of that name, or None."""
    with store.read_engine.connect() as conn:
        row = conn.execute(select(destinations).where(destinations.c.name == name)).mappings()
        found = row.first()
    return _row(found) if found else None


def require(store: Store, name: str) -> Destination:
    """The destination of that name, or a LookupError that says how to list them."""
    found = get(store, name)
    if found is None:
        raise LookupError(f"no destination named {name!r} (cdrhub forward list)")
    return found


def set_state(store: Store, name: str, state: str, reason: str | None = None) -> Destination:
    """Pause or resume. Resuming clears the failure clock, so auto-pause starts counting anew."""
    destination = require(store, name)
    values: dict[str, Any] = {"state": state, "paused_reason": reason}
    if state == "active":
        values["failing_since_ms"] = None
    with store.writing() as conn:
        conn.execute(update(destinations).where(destinations.c.id == destination.id).values(values))
    return require(store, name)


def remove(store: Store, name: str) -> Destination:
    """Delete a destination and what was pending for it (its attempts stay until pruned)."""
    destination = require(store, name)
    with store.writing() as conn:
        conn.execute(
            delete(forward_pending).where(forward_pending.c.destination_id == destination.id)
        )
        conn.execute(delete(destinations).where(destinations.c.id == destination.id))
    return destination


def rotate_secret(
    store: Store, name: str, secret: str | None = None, grace_seconds: float = 86400
) -> tuple[Destination, str]:
    """A new signing secret; the old one keeps signing too for ``grace_seconds``."""
    destination = require(store, name)
    if destination.kind != "webhook":
        raise DestinationError(f"{name} is a {destination.kind} destination: only webhooks sign")
    new = check_secret(secret) if secret else new_secret()
    values = {
        "secret": new,
        "previous_secret": destination.secret,
        "previous_secret_until_ms": _now_ms() + int(grace_seconds * 1000),
    }
    with store.writing() as conn:
        conn.execute(update(destinations).where(destinations.c.id == destination.id).values(values))
    return require(store, name), new
