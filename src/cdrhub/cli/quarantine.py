"""``cdrhub quarantine list|show|replay``: the refused bodies, kept byte for byte."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cdrhub.ops import printable
from cdrhub.settings import Settings

if TYPE_CHECKING:

    pass

from cdrhub.cli._common import console, settings_options, store_for


@click.group(name="quarantine")
def quarantine_group() -> None:
    """Bodies that were refused (after a valid token): list, inspect, replay."""


@quarantine_group.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include entries already replayed.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="How many entries, newest first.",
)
@settings_options
def quarantine_list(settings: Settings, include_replayed: bool, limit: int) -> None:
    """List quarantined bodies, newest first.

    \b
    Example:
        cdrhub quarantine list --limit 20
    """
    store = store_for(settings)
    try:
        entries = store.quarantined(limit=limit, include_replayed=include_replayed)
    finally:
        store.close()
    if not entries:
        click.echo("Quarantine is empty.")
        return
    table = Table("id", "received (UTC)", "status", "reason", "callId", "replayed")
    for e in entries:
        table.add_row(
            str(e["id"]),
            e["received_at"].strftime("%Y-%m-%d %H:%M:%S"),
            str(e["status"]),
            e["reason"],
            printable(e["call_id"] or ""),
            e["replay_result"] or "",
        )
    console().print(table)


@quarantine_group.command("show")
@click.argument("entry_id", type=int)
@settings_options
def quarantine_show(settings: Settings, entry_id: int) -> None:
    """Show one quarantined body: why it was refused, its headers and its bytes.

    \b
    Example:
        cdrhub quarantine show 12
    """
    store = store_for(settings)
    try:
        entry = store.quarantine_entry(entry_id)
    finally:
        store.close()
    if entry is None:
        raise click.ClickException(
            f"no quarantine entry #{entry_id} (see `cdrhub quarantine list`)"
        )
    detail = json.loads(entry["detail"])
    click.echo(
        f"#{entry['id']}  {entry['received_at'].isoformat()}  {entry['status']} "
        f"{entry['reason']}  from {printable(entry['remote_addr'] or '?')} "
        f"on {printable(entry['path'] or '?')}"
    )
    click.echo(f"detail: {printable(str(detail.get('detail')))}")
    for problem in detail.get("fields", []):
        click.echo(
            f"  {printable(problem['field'])}: got {problem['value']!r}, "
            f"expected {printable(problem['expected'])}"
        )
    headers = json.dumps(dict(json.loads(entry["headers"])), ensure_ascii=False)
    click.echo("headers: " + printable(headers))
    if entry["replayed_at"]:
        click.echo(f"replayed: {entry['replayed_at'].isoformat()} ({entry['replay_result']})")
    click.echo("body" + ("" if entry["body_complete"] else " (cut at the size limit)") + ":")
    # The body's own line breaks stay; any other control character (a terminal escape) is shown.
    text = bytes(entry["body"]).decode("utf-8", errors="backslashreplace")
    click.echo("\n".join(printable(line) for line in text.split("\n")))


@quarantine_group.command("replay")
@click.argument("entry_ids", type=int, nargs=-1)
@click.option("--all", "replay_every", is_flag=True, help="Replay every entry not replayed yet.")
@settings_options
def quarantine_replay(settings: Settings, entry_ids: tuple[int, ...], replay_every: bool) -> None:
    """Store quarantined bodies that today's cdrhub accepts.

    \b
    Examples:
        cdrhub quarantine replay 12 13
        cdrhub quarantine replay --all
    Exits 1 if any entry is still refused (it stays in quarantine).
    """
    from cdrhub.ingest import replay, replay_all

    if not entry_ids and not replay_every:
        raise click.UsageError("give entry ids, or --all")
    store = store_for(settings)
    try:
        try:
            results = replay_all(store) if replay_every else [replay(store, i) for i in entry_ids]
        except LookupError as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    for r in results:
        mark = "stored" if r.stored else "not stored"
        click.echo(
            f"#{r.entry_id}: {mark}: {r.message}" + (f" (call {r.call_id})" if r.call_id else "")
        )
    if any(not r.stored for r in results):
        sys.exit(1)
