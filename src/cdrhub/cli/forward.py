"""``cdrhub forward ...``: destinations for every stored call, their attempts, replays."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime

import click
from rich.table import Table

from cdrhub.cli._common import check_database, console, moment, settings_options, store_for
from cdrhub.forward import Deliverer, DestinationError, FilterError, destinations, history
from cdrhub.settings import Settings
from cdrhub.store import Store


def _when(ms: int | None, settings: Settings) -> str:
    if ms is None:
        return "-"
    from zoneinfo import ZoneInfo

    moment_ = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(settings.timezone))
    return moment_.isoformat(timespec="seconds")


def _require(store: Store, name: str) -> destinations.Destination:
    try:
        return destinations.require(store, name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(name="forward")
def forward_group() -> None:
    """Forward every stored call to webhooks and message brokers.

    \b
    Each new call is a `call.created` event and each correction a `call.updated`, sent at
    least once to every destination, per call in order, with retries and dead letters.
    See docs/forwarding.md.
    """


@forward_group.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--secret", help="Webhook signing secret whsec_... (default: generated, shown once).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["standard", "nxcc"]),
    default="standard",
    show_default=True,
    help="standard: signed event JSON; nxcc: relay NXCC's exact body with --token.",
)
@click.option("--token", help="With --format nxcc: the token header the receiver expects.")
@click.option("--events", "event_types", help="Event types (default call.created,call.updated).")
@click.option("--filter", "call_filter", help='Which calls, e.g. "direction=inbound answered=no".')
@click.option(
    "--from",
    "start",
    default="now",
    show_default=True,
    help="Start with events from: now, beginning (the outbox's oldest), or a date/time.",
)
@click.option("--concurrency", type=int, help="Events in flight at once (default 10 for HTTP).")
@click.option("--rate", type=float, help="At most this many events per second.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per try.")
@settings_options
def forward_add(
    settings: Settings,
    name: str,
    url: str,
    secret: str | None,
    fmt: str,
    token: str | None,
    event_types: str | None,
    call_filter: str | None,
    start: str,
    concurrency: int | None,
    rate: float | None,
    timeout: float,
) -> None:
    """Add a destination; its URL's scheme picks the kind.

    \b
    Examples:
        cdrhub forward add crm https://crm.example.com/hooks/calls
        cdrhub forward add legacy http://10.0.0.5/cc/callback --format nxcc --token OLD
        cdrhub forward add missed https://tickets.example/hook --filter "answered=no"
        cdrhub forward add stream nats://127.0.0.1:4222/cdr.calls --from beginning
        cdrhub forward add redis redis://127.0.0.1:6379/0?stream=calls&maxlen=100000
        cdrhub forward add rabbit "amqp://guest:guest@127.0.0.1:5672/?exchange=cdr&routing_key=calls"
        cdrhub forward add mqtt mqtt://127.0.0.1:1883/cdr/calls
    """
    check_database(settings)
    store = store_for(settings)
    begin: str | int = start
    if start not in ("now", "beginning"):
        begin = moment(start, settings, "--from") * 1000
    try:
        added, generated = destinations.add(
            store,
            name,
            url,
            secret=secret,
            fmt=fmt,
            token=token,
            event_types=event_types,
            call_filter=call_filter,
            start=begin,
            concurrency=concurrency,
            rate_per_second=rate,
            timeout_seconds=timeout,
        )
    except (DestinationError, FilterError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    out = console()
    out.print(f"Added {added.name}: {added.kind} to {destinations.masked_url(added.url)}")
    if generated:
        out.print("Signing secret (shown only now; give it to the receiver):", highlight=False)
        click.echo(generated)


@forward_group.command("list")
@settings_options
def forward_list(settings: Settings) -> None:
    """Every destination: kind, state, what it still owes, lag and last error."""
    store = store_for(settings)
    try:
        rows = history.forwarding_status(store)
        found = {d.name: d for d in destinations.all_destinations(store)}
    finally:
        store.close()
    table = Table("name", "kind", "url", "state", "waiting", "dead", "lag", "last error")
    for row in rows:
        d = found[row["name"]]
        table.add_row(
            d.name,
            d.kind,
            destinations.masked_url(d.url),
            d.state,
            str(row["waiting"]),
            str(row["dead"]),
            f"{row['lag_seconds']:.1f} s",
            row["last_error"] or "",
        )
    console().print(table)


@forward_group.command("show")
@click.argument("name")
@settings_options
def forward_show(settings: Settings, name: str) -> None:
    """One destination as JSON, secrets masked."""
    store = store_for(settings)
    try:
        destination = _require(store, name)
        shown = destination.public() | history.status(store, destination)
    finally:
        store.close()
    click.echo(json.dumps(shown, indent=2, ensure_ascii=False))


def _set_state(settings: Settings, name: str, state: str, reason: str | None) -> None:
    store = store_for(settings)
    try:
        changed = destinations.set_state(store, name, state, reason)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{changed.name} is {changed.state}.")


@forward_group.command("pause")
@click.argument("name")
@settings_options
def forward_pause(settings: Settings, name: str) -> None:
    """Stop sending to NAME; events wait and go out on resume, in order."""
    _set_state(settings, name, "paused", "paused by an operator")


@forward_group.command("resume")
@click.argument("name")
@settings_options
def forward_resume(settings: Settings, name: str) -> None:
    """Send to NAME again, from where it stopped."""
    _set_state(settings, name, "active", None)


@forward_group.command("remove")
@click.argument("name")
@settings_options
def forward_remove(settings: Settings, name: str) -> None:
    """Delete NAME and what was waiting for it."""
    store = store_for(settings)
    try:
        destinations.remove(store, name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"Removed {name}.")


@forward_group.command("rotate-secret")
@click.argument("name")
@click.option("--secret", help="The new secret whsec_... (default: generated).")
@click.option("--grace", default="24h", show_default=True, help="Old secret also signs this long.")
@settings_options
def forward_rotate_secret(settings: Settings, name: str, secret: str | None, grace: str) -> None:
    """Sign NAME's webhooks with a new secret, and with the old one during the grace period."""
    from cdrhub.forward import schedule

    try:
        [grace_seconds] = schedule.parse(grace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from None
    store = store_for(settings)
    try:
        _, new = destinations.rotate_secret(store, name, secret, grace_seconds)
    except (LookupError, DestinationError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"New signing secret for {name} (the old one also signs for {grace}):")
    click.echo(new)


@forward_group.command("attempts")
@click.argument("name")
@click.option("--failed", is_flag=True, help="Only failed attempts.")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@settings_options
def forward_attempts(settings: Settings, name: str, failed: bool, limit: int) -> None:
    """Recent delivery attempts to NAME: time, event, status, latency, error."""
    store = store_for(settings)
    try:
        rows = history.attempts(store, _require(store, name), failed_only=failed, limit=limit)
    finally:
        store.close()
    table = Table("time", "event", "ok", "status", "ms", "error")
    for row in rows:
        table.add_row(
            _when(row["at_ms"], settings),
            row["event_id"],
            "yes" if row["ok"] else "no",
            str(row["status"] or ""),
            f"{row['latency_ms']:.1f}",
            row["error"] or "",
        )
    console().print(table)


@forward_group.command("replay")
@click.argument("name")
@click.option("--from", "start", help="Events stored from this date/time (configured zone).")
@click.option("--to", "end", help="... up to this date (included) or time (excluded).")
@click.option("--filter", "call_filter", help='Only these calls, e.g. "direction=inbound".')
@settings_options
def forward_replay(
    settings: Settings, name: str, start: str | None, end: str | None, call_filter: str | None
) -> None:
    """Send NAME existing events again, with their original ids.

    \b
    Example:
        cdrhub forward replay crm --from 2026-11-30 --to 2026-11-30
    """
    start_ms = moment(start, settings, "--from") * 1000 if start else None
    end_ms = moment(end, settings, "--to", end=True) * 1000 if end else None
    store = store_for(settings)
    try:
        count = history.replay(
            store, name, start_ms=start_ms, end_ms=end_ms, call_filter=call_filter
        )
    except (LookupError, FilterError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{count} event(s) queued again for {name}.")


@forward_group.command("retry")
@click.argument("name")
@settings_options
def forward_retry(settings: Settings, name: str) -> None:
    """Try NAME's dead letters again now (the retry schedule starts over)."""
    store = store_for(settings)
    try:
        count = history.retry_dead(store, _require(store, name))
    finally:
        store.close()
    click.echo(f"{count} dead letter(s) queued again for {name}.")


@forward_group.command("run")
@click.option("--seconds", type=float, help="Stop after this long (default: until Ctrl-C).")
@settings_options
def forward_run(settings: Settings, seconds: float | None) -> None:
    """Deliver events without receiving pushes (set CDRHUB_FORWARD=false on the receivers).

    Several may run against one PostgreSQL: each destination is delivered by one of them
    at a time.
    """
    check_database(settings)
    store = store_for(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if seconds is not None:
            loop.call_later(seconds, stop.set)
        await Deliverer(store, settings).run(stop)

    started = time.monotonic()
    try:
        asyncio.run(main())
    finally:
        store.close()
    click.echo(f"Stopped after {time.monotonic() - started:.0f} s.")
