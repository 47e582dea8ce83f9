"""The ``cdrhub`` command: serve, send, database, quarantine, tokens and config.

Each command is a thin wrapper over the same functions the HTTP app uses; Rich output stays
here. Run without a command, ``cdrhub`` serves.
"""

from __future__ import annotations

import functools
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from cdrhub import __version__, cdr, memory
from cdrhub.errors import SchemaOutdated
from cdrhub.logs import configure as configure_logging
from cdrhub.logs import printable
from cdrhub.settings import Settings, load_settings, mask_secret, mask_url
from cdrhub.store import Store, open_store
from cdrhub.tokens import accepted_tokens, new_token, read_token_file, write_token_file

if TYPE_CHECKING:
    from rich.progress import Progress

    from cdrhub.backfill import Progress as BackfillProgress

F = TypeVar("F", bound=Callable[..., Any])


def _console(*, markup: bool = False) -> Console:
    """Rich output; when piped, wide enough that tables never wrap (scripts read them).

    Markup is off unless asked for: table cells carry what senders chose (a callId, an agent's
    name), and ``[/x]`` in one would otherwise end the command with a MarkupError.
    """
    return Console(width=None if sys.stdout.isatty() else 240, markup=markup)


def settings_options(func: F) -> F:
    """``--config`` and ``--database-url``, shared by every command that needs settings."""

    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="TOML file with settings (default: $CDRHUB_CONFIG). Environment variables win.",
    )
    @click.option(
        "--database-url",
        help="Database to use (default: $CDRHUB_DATABASE_URL or sqlite:///data/cdrhub.db).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, config_file: Path | None, database_url: str | None, **kw: Any) -> Any:
        kw["settings"] = _load(config_file, database_url=database_url)
        return func(*args, **kw)

    return wrapper  # type: ignore[return-value]


def _load(config_file: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config_file, **overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"CDRHUB_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


def _store(settings: Settings) -> Store:
    memory.keep_freed_memory(settings.keep_freed_memory_mb)
    try:
        return open_store(
            settings.database_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            fact_cache_bytes=settings.stats_cache_mb * 2**20,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


class _DefaultServe(click.Group):
    """``cdrhub`` alone (or with only serve's options) means ``cdrhub serve``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] not in ("--help", "--version")):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultServe)
@click.version_option(__version__, prog_name="cdrhub")
def main() -> None:
    """Receive NXCC call-log pushes and keep every call, once.

    \b
    Start receiving (SQLite under ./data, token generated on first start):
        cdrhub db upgrade && cdrhub serve
    Send the vendor's example push to it:
        cdrhub send
    """


@main.command()
@click.option("--host", help="Interface to listen on (default 127.0.0.1; 0.0.0.0 for NXCC).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--workers", type=int, help="Server processes (default 1; see CDRHUB_WORKERS).")
@settings_options
def serve(settings: Settings, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the receiver: NXCC pushes to it, a 200 means the call is stored.

    \b
    Example:
        CDRHUB_TOKENS=s3cret cdrhub serve --host 0.0.0.0 --port 8080
    Then set the call-log push URL in NXCC's call center settings to
    http://<this server>:8080/cc/callback with the same token.
    """
    from cdrhub.server import run

    flags = {"host": host, "port": port, "workers": workers}
    settings = settings.model_copy(update={k: v for k, v in flags.items() if v is not None})
    configure_logging(settings.log_level, settings.log_format)
    tokens, generated = accepted_tokens(settings, generate=True)
    _check_database(settings)
    _print_banner(settings, tokens, generated)
    run(settings)


def _check_database(settings: Settings) -> None:
    """Refuse to start on an outdated schema, with the command that fixes it."""
    from cdrhub.app import prepare_store

    try:
        prepare_store(settings).close()
    except SchemaOutdated as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(
            f"cannot use the database {mask_url(settings.database_url)}: {exc}"
        ) from None


_ANY = ("0.0.0.0", "::")  # noqa: S104 - recognising "all interfaces" to print a useful URL


def _print_banner(settings: Settings, tokens: list[str], generated: bool) -> None:
    base = settings.public_url or (
        f"http://{'<this-server>' if settings.host in _ANY else settings.host}:{settings.port}"
    )
    out = _console(markup=True)
    out.print(f"[bold]cdrhub {__version__}[/] on {mask_url(settings.database_url)}")
    out.print("Configure NXCC's call-log push (call center settings) with:")
    for path in settings.callback_paths:
        out.print(f"  URL:   [bold]{base.rstrip('/')}{path}[/]")
    if settings.tokens:
        shown = ", ".join(mask_secret(t) for t in tokens) + "  (from CDRHUB_TOKENS)"
    else:
        note = "generated now, saved in" if generated else "from"
        shown = f"{tokens[0]}  ({note} {settings.token_file})"
    out.print(f"  token: [bold]{shown}[/]", highlight=False)
    if settings.host == "127.0.0.1":
        out.print("Listening on loopback only: use --host 0.0.0.0 so NXCC can reach it.")


@main.command()
@click.argument("file", required=False, type=click.File("rb"))
@click.option(
    "--url", help="Callback URL (default: this config's first callback path on host:port)."
)
@click.option("--token", help="Token to send (default: the first configured token).")
@click.option("--new-id", is_flag=True, help="Give the call a fresh random callId.")
@settings_options
def send(settings: Settings, file: Any, url: str | None, token: str | None, new_id: bool) -> None:
    """Push a call log the way NXCC does: the vendor's example, or a JSON FILE.

    \b
    Examples:
        cdrhub send                              # the vendor's example, to this server
        cdrhub send call.json --url https://cdr.example.com/cc/callback --token s3cret
        cdrhub send --new-id                     # a new call each time
    Exits 1 unless the server answered 200.
    """
    body = file.read() if file else json.dumps(cdr.VENDOR_EXAMPLE, ensure_ascii=False).encode()
    if new_id:
        data = json.loads(body)
        data["callId"] = str(uuid.uuid4())
        body = json.dumps(data, ensure_ascii=False).encode()
    target = url or f"http://{settings.host}:{settings.port}{settings.callback_paths[0]}"
    if token is None:
        tokens, _ = accepted_tokens(settings)
        if not tokens:
            raise click.ClickException(
                "no token to send: pass --token, or set CDRHUB_TOKENS (or run `cdrhub serve` once "
                "to generate data/token)"
            )
        token = tokens[0]
    try:
        response = httpx.post(
            target,
            content=body,
            headers={"token": token, "Content-Type": "application/json"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"could not reach {target}: {exc}") from None
    _console().print(f"{response.status_code} {response.reason_phrase}", highlight=False)
    click.echo(response.text)
    if response.status_code != 200:
        sys.exit(1)


@main.group()
def db() -> None:
    """Database schema: see where it is, bring it up to date."""


@db.command("upgrade")
@settings_options
def db_upgrade(settings: Settings) -> None:
    """Create or migrate the database schema to what this cdrhub needs.

    \b
    Example:
        CDRHUB_DATABASE_URL=postgresql://cdrhub@db:5432/cdrhub cdrhub db upgrade
    Safe to run any time, from any number of receivers: it only applies what is missing.
    """
    store = _store(settings)
    try:
        before, after = store.upgrade()
    except Exception as exc:
        raise click.ClickException(f"upgrade failed: {exc}") from None
    finally:
        store.close()
    if before == after:
        click.echo(f"Database already at {after}: nothing to do.")
    else:
        click.echo(f"Database upgraded from {before or 'empty'} to {after}.")


@db.command("status")
@settings_options
def db_status(settings: Settings) -> None:
    """Show the schema revision of the database and the one this cdrhub needs.

    \b
    Example:
        cdrhub db status     # exits 1 when `cdrhub db upgrade` is needed
    """
    store = _store(settings)
    try:
        current, head = store.schema_status()
    finally:
        store.close()
    click.echo(f"database: {mask_url(settings.database_url)}")
    click.echo(f"schema:   {current or 'empty'} (needs {head})")
    if current != head:
        click.echo("Run `cdrhub db upgrade` to bring it up to date.")
        sys.exit(1)


@main.group(name="quarantine")
def quarantine_group() -> None:
    """Bodies that were refused (after a valid token): list, inspect, replay."""


@quarantine_group.command("list")
@click.option("--all", "include_replayed", is_flag=True, help="Include entries already replayed.")
@click.option("--limit", default=50, show_default=True, help="How many entries, newest first.")
@settings_options
def quarantine_list(settings: Settings, include_replayed: bool, limit: int) -> None:
    """List quarantined bodies, newest first.

    \b
    Example:
        cdrhub quarantine list --limit 20
    """
    store = _store(settings)
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
    _console().print(table)


@quarantine_group.command("show")
@click.argument("entry_id", type=int)
@settings_options
def quarantine_show(settings: Settings, entry_id: int) -> None:
    """Show one quarantined body: why it was refused, its headers and its bytes.

    \b
    Example:
        cdrhub quarantine show 12
    """
    store = _store(settings)
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
    from cdrhub.quarantine import replay, replay_all

    if not entry_ids and not replay_every:
        raise click.UsageError("give entry ids, or --all")
    store = _store(settings)
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


@main.command()
@click.option("--older-than", required=True, help="Age to keep, e.g. 400d, 12w or 36h.")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@settings_options
def prune(settings: Settings, older_than: str, dry_run: bool) -> None:
    """Delete calls, their raw versions and quarantine entries older than a retention age.

    \b
    Example:
        cdrhub prune --older-than 400d --dry-run
        cdrhub prune --older-than 400d
    A call's age is its startTime. CDRHUB_RETENTION_DAYS does this daily inside serve.
    """
    from cdrhub.maintenance import parse_age
    from cdrhub.maintenance import prune as prune_store

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    store = _store(settings)
    try:
        counts = prune_store(store, age, dry_run=dry_run)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {counts['calls']} calls, {counts['raw_versions']} raw versions, "
        f"{counts['quarantine']} quarantine entries older than {older_than}"
    )


@main.command()
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
@settings_options
def backup(settings: Settings, destination: Path) -> None:
    """Copy the SQLite database to DESTINATION, consistently, while serve keeps running.

    \b
    Example:
        cdrhub backup backups/cdrhub-$(date +%F).db
    For PostgreSQL use its own tools: pg_dump -Fc -f cdrhub.dump cdrhub
    """
    from cdrhub.maintenance import backup as backup_store

    store = _store(settings)
    try:
        size = backup_store(store, destination)
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"backed up to {destination} ({size:,} bytes)")


@main.group()
def token() -> None:
    """Ingest tokens (the `token` header NXCC sends)."""


@token.command("new")
@click.option("--save", is_flag=True, help="Replace the token in <data_dir>/token with it.")
@click.option(
    "--add",
    is_flag=True,
    help="Add it to <data_dir>/token, keeping the old ones "
    "(rotation: NXCC can switch while both work).",
)
@settings_options
def token_new(settings: Settings, save: bool, add: bool) -> None:
    """Print a new random token (and optionally keep it in the token file).

    \b
    Rotation without downtime:
        cdrhub token new --add        # both tokens now accepted (restart serve)
        ... set the new token in NXCC ...
        cdrhub token new --save       # or edit data/token to drop the old one
    With CDRHUB_TOKENS set, list old and new there instead: CDRHUB_TOKENS=old,new
    """
    fresh = new_token()
    if save or add:
        kept = read_token_file(settings.token_file) if add else []
        write_token_file(settings.token_file, [*kept, fresh])
        click.echo(f"{fresh}\nsaved in {settings.token_file}; restart `cdrhub serve` to use it")
        if settings.tokens:
            click.echo("note: CDRHUB_TOKENS is set and takes precedence over the token file")
    else:
        click.echo(fresh)


@main.command()
@settings_options
def config(settings: Settings) -> None:
    """Print the effective settings (secrets masked) as TOML-style lines.

    \b
    Example:
        CDRHUB_CONFIG=/etc/cdrhub.toml cdrhub config
    """
    for name, value in settings.masked().items():
        click.echo(f"{name} = {json.dumps(value, ensure_ascii=False)}")


@main.group()
def apikey() -> None:
    """API keys for reading calls, statistics and exports over HTTP (not for pushing)."""


@apikey.command("create")
@click.argument("name")
@click.option("--read-only", is_flag=True, help="Read calls, stats and exports; nothing more.")
@settings_options
def apikey_create(settings: Settings, name: str, read_only: bool) -> None:
    """Create an API key and print it (the last line of output is the key, alone).

    \b
    Example:
        KEY=$(cdrhub apikey create crm-sync --read-only | tail -n1)
        curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8080/api/calls
    The key is shown only now: cdrhub keeps its hash, not the key.
    """
    from cdrhub.apikeys import create_key

    store = _store(settings)
    try:
        key, secret = create_key(store, name, read_only=read_only)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    kind = "read-only" if key.read_only else "read and write"
    click.echo(f"API key #{key.id} {key.name!r} ({kind}) created; it is shown only once:")
    click.echo(secret)


@apikey.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@settings_options
def apikey_list(settings: Settings, include_revoked: bool) -> None:
    """List API keys (their first characters only; the keys themselves are not kept).

    \b
    Example:
        cdrhub apikey list --all
    """
    from cdrhub.apikeys import list_keys

    store = _store(settings)
    try:
        keys = list_keys(store, include_revoked=include_revoked)
    finally:
        store.close()
    if not keys:
        click.echo("No API keys. Create one with `cdrhub apikey create NAME`.")
        return
    table = Table("id", "name", "key starts", "rights", "created (UTC)", "revoked (UTC)")
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix + "…",
            "read" if k.read_only else "read, write",
            k.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at else "",
        )
    _console().print(table)


@apikey.command("revoke")
@click.argument("key")
@settings_options
def apikey_revoke(settings: Settings, key: str) -> None:
    """Revoke an API key by id or name; requests with it get 401 from now on.

    \b
    Example:
        cdrhub apikey revoke crm-sync
    """
    from cdrhub.apikeys import revoke_key

    store = _store(settings)
    try:
        revoked = revoke_key(store, key)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"API key #{revoked.id} {revoked.name!r} revoked.")


def filter_options(func: F) -> F:
    """The /api/calls filters as options (``--from``, ``--agent``...), plus ``--tz``.

    The command receives them as ``filters``, a dict keyed by the API's parameter names, and
    parses them with the same ``query.parse_filters`` the API uses.
    """
    from cdrhub.query import FILTERS, TZ_PARAM

    params = (*FILTERS, TZ_PARAM)
    for param in reversed(params):
        func = click.option(
            f"--{param.name.replace('_', '-')}", f"filter_{param.name}", help=param.doc
        )(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kw: Any) -> Any:
        kw["filters"] = {p.name: kw.pop(f"filter_{p.name}") for p in params}
        return func(*args, **kw)

    return wrapper  # type: ignore[return-value]


def _selection(settings: Settings, filters: dict[str, str | None]) -> tuple[Any, Any]:
    """(CallFilter, ZoneInfo) from the filter options, or a one-line error naming the option."""
    from cdrhub import query
    from cdrhub.errors import InvalidParameter

    try:
        tz = query.zone(filters.get("tz") or settings.timezone)
        return query.parse_filters(filters, tz), tz
    except InvalidParameter as error:
        raise _option_error(error) from None


def _option_error(error: Any) -> click.ClickException:
    problems = "; ".join(
        f"--{p.field.replace('_', '-')} {p.value!r}: expected {p.expected}" for p in error.fields
    )
    return click.ClickException(f"{error.detail} ({problems})" if problems else error.detail)


@main.command()
@filter_options
@click.option(
    "--group-by",
    default="none",
    show_default=True,
    help="none, or a comma-separated list such as day,agent (hour|day|week|month, direction, "
    "agent, task_id, intent, hangup_by, hangup_reason).",
)
@click.option("--sl-seconds", type=float, help="Service level threshold (default: settings).")
@click.option(
    "--short-abandon-seconds", type=float, help="Short-abandon threshold (default: settings)."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@settings_options
def stats(
    settings: Settings,
    filters: dict[str, str | None],
    group_by: str,
    sl_seconds: float | None,
    short_abandon_seconds: float | None,
    fmt: str,
) -> None:
    """Call-center metrics (docs/metrics.md), the same numbers as GET /api/stats.

    \b
    Examples:
        cdrhub stats --from 2026-11-01 --to 2026-12-01 --group-by day
        cdrhub stats --from 2026-11-24 --group-by agent --direction inbound --format csv
    Times without an offset are in --tz (default: CDRHUB_TIMEZONE).
    """
    from cdrhub import stats as stats_module
    from cdrhub.errors import InvalidParameter

    where, tz = _selection(settings, filters)
    try:
        names = stats_module.parse_group_by(group_by)
    except InvalidParameter as error:
        raise _option_error(error) from None
    for name, value in (
        ("sl-seconds", sl_seconds),
        ("short-abandon-seconds", short_abandon_seconds),
    ):
        if value is not None and value < 0:
            raise click.BadParameter("must be 0 or more", param_hint=f"--{name}")
    store = _store(settings)
    try:
        groups = stats_module.compute(
            store,
            where,
            group_by=names,
            tz=tz,
            sl_seconds=settings.service_level_seconds if sl_seconds is None else sl_seconds,
            short_abandon_seconds=settings.short_abandon_seconds
            if short_abandon_seconds is None
            else short_abandon_seconds,
        )
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps({"groups": groups}, ensure_ascii=False, indent=2))
        return
    header = [*names, *stats_module.METRICS]
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        for g in groups:
            writer.writerow(
                ["" if v is None else v for v in (*g["key"].values(), *_metric_values(g))]
            )
        return
    table = Table(*[h.replace("_", " ") for h in header])
    for g in groups:
        table.add_row(
            *["" if v is None else printable(str(v)) for v in g["key"].values()],
            *[_show(v) for v in _metric_values(g)],
        )
    _console().print(table)


def _metric_values(group: dict[str, Any]) -> list[Any]:
    from cdrhub.stats import METRICS

    return [group[m] for m in METRICS]


def _show(value: Any) -> str:
    """Table cells: null as a dash, floats to three decimals."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@main.command(name="export")
@filter_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "parquet"]),
    help="Default: from the --output file's extension, else csv.",
)
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write ('-' for standard output).",
)
@click.option("--no-bom", is_flag=True, help="CSV without the UTF-8 BOM (Excel needs it).")
@settings_options
def export_command(
    settings: Settings,
    filters: dict[str, str | None],
    fmt: str | None,
    output: Path,
    no_bom: bool,
) -> None:
    """Write every matching call to a file, streamed, with a progress bar.

    \b
    Examples:
        cdrhub export --from 2026-11-01 --to 2026-12-01 --output november.csv
        cdrhub export --direction AICC --task-id 1688363452814331904 -o task.parquet
    CSV is UTF-8 with a BOM, and cells starting with = + - @ get a leading ' (no formulas).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from cdrhub import export, query
    from cdrhub.errors import InvalidParameter

    where, tz = _selection(settings, filters)
    chosen = fmt or (output.suffix.lstrip(".").lower() if output.suffix else "csv")
    try:
        file_format = export.parse_format(chosen)
    except InvalidParameter as error:
        raise click.ClickException(error.detail) from None
    store = _store(settings)
    to_stdout = str(output) == "-"
    try:
        total = query.count_calls(store, where)
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=to_stdout,
        )
        with progress:
            task = progress.add_task(f"Exporting to {output}", total=total)
            chunks = export.stream(
                store,
                where,
                file_format,
                tz,
                bom=not no_bom,
                progress=lambda n: progress.advance(task, n),
            )
            target = sys.stdout.buffer if to_stdout else output.open("wb")
            try:
                for chunk in chunks:
                    target.write(chunk)
            finally:
                if not to_stdout:
                    target.close()
    finally:
        store.close()
    if not to_stdout:
        click.echo(f"{total} calls written to {output} ({file_format}).", err=True)


@main.command()
@click.option("--count", default=1000, show_default=True, help="How many calls.")
@click.option("--seed", default=1, show_default=True, help="Same seed, same calls.")
@click.option("--days", default=30, show_default=True, help="Spread over this many days.")
@click.option("--end", help="Last day (ISO date, default today) in the configured zone.")
@click.option("--url", help="Push to this callback URL instead of writing to the database.")
@click.option("--token", help="Token for --url (default: the first configured token).")
@click.option("--rate", type=float, default=10.0, show_default=True, help="Pushes/s with --url.")
@settings_options
def simulate(
    settings: Settings,
    count: int,
    seed: int,
    days: int,
    end: str | None,
    url: str | None,
    token: str | None,
    rate: float,
) -> None:
    """Generate realistic NXCC traffic: straight into the database, or pushed to a URL.

    \b
    Examples:
        cdrhub simulate --count 1000000              # fast: batched database writes
        cdrhub simulate --count 600 --url http://127.0.0.1:8080/cc/callback --rate 20
    """
    import time
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from rich.progress import Progress

    from cdrhub import simulate as sim
    from cdrhub.store import Push

    tz = ZoneInfo(settings.timezone)
    last = datetime.fromisoformat(end).date() if end else datetime.now(tz).date()
    until = datetime(last.year, last.month, last.day, tzinfo=tz) + timedelta(days=1)
    bodies = sim.calls(count, seed=seed, end=until, days=days, tz=tz)
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("Simulating", total=count)
        if url:
            if token is None:
                tokens, _ = accepted_tokens(settings)
                if not tokens:
                    raise click.ClickException("no token to send: pass --token")
                token = tokens[0]
            with httpx.Client(timeout=30) as http:
                started = time.monotonic()
                for i, body in enumerate(bodies):
                    delay = started + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    response = http.post(url, json=body, headers={"token": token})
                    if response.status_code != 200:
                        raise click.ClickException(f"{response.status_code}: {response.text}")
                    progress.advance(task)
        else:
            _check_database(settings)
            store = _store(settings)
            try:
                batch: list[Push] = []
                for body in bodies:
                    raw = json.dumps(body, ensure_ascii=False).encode()
                    batch.append(Push(cdr.parse(raw), raw, source="import"))
                    if len(batch) == 5000:
                        store.write(batch)
                        progress.advance(task, len(batch))
                        batch = []
                if batch:
                    store.write(batch)
                    progress.advance(task, len(batch))
                _refresh_statistics(store, progress)
            finally:
                store.close()
    click.echo(f"{count} simulated calls {'pushed' if url else 'written'} (seed {seed}).", err=True)


def _refresh_statistics(store: Store, progress: Progress) -> None:
    """After a bulk load: refresh the planner's statistics (PostgreSQL) and build the hourly
    statistics snapshots, with a progress bar. Both would happen later by themselves
    (autovacuum, readers); doing it here keeps the first queries fast."""
    from cdrhub import rollup

    if store.kind == "postgresql":  # a bulk load leaves the planner's estimates behind
        with store.writing() as conn:
            conn.exec_driver_sql("ANALYZE calls")
    stale = rollup.stale_count(store)
    if stale:
        task = progress.add_task("Statistics snapshots (hours)", total=stale)
        rollup.refresh(store, progress=lambda done: progress.advance(task, done))


# -- healing from NXCC's query API, and files -----------------------------------------------------


def _nxcc_client(settings: Settings) -> Any:
    from cdrhub.nxcc import NxccError, from_settings

    try:
        return from_settings(settings)
    except NxccError as exc:
        raise click.ClickException(str(exc)) from None


def _moment(text: str, settings: Settings, param: str, *, end: bool = False) -> int:
    """A CLI time as epoch seconds: a date (local midnight; for an end, the end of that day)
    or an ISO time, in the configured zone unless it names its own offset.

    A date is tried first, in every form ISO allows (``2026-11-24`` and ``20261124``):
    ``datetime`` also reads ``20261124``, as that day's midnight, which for ``--to`` would
    leave the day out.
    """
    from datetime import date, datetime, timedelta
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(settings.timezone)
    text = text.strip()
    try:
        day: date | None = date.fromisoformat(text)
    except ValueError:
        day = None  # not a date: an ISO time, read below
    if day is not None:
        day += timedelta(days=1 if end else 0)
        return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: write a date (2026-11-24) or an ISO time (2026-11-24T08:00, "
            "2026-11-24T08:00+08:00)",
            param_hint=param,
        ) from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=tz)).timestamp())


def _local(settings: Settings, epoch_s: float) -> str:
    """An instant as the call center reads it: ``2026-11-24 15:00``."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    moment = datetime.fromtimestamp(epoch_s, UTC).astimezone(ZoneInfo(settings.timezone))
    return moment.strftime("%Y-%m-%d %H:%M")


def _pull_errors() -> tuple[type[Exception], ...]:
    """What a pull or an import can end with that is the user's to fix, not a bug."""
    from sqlalchemy.exc import DBAPIError

    from cdrhub.errors import CdrhubError
    from cdrhub.nxcc import NxccError

    return (NxccError, CdrhubError, DBAPIError)


def _one_line(exc: Exception) -> str:
    """The error as one line: a database driver's error without its SQL or parameters."""
    from sqlalchemy.exc import DBAPIError

    from cdrhub.errors import StoreUnavailable
    from cdrhub.store import describe_database_error

    reason = describe_database_error(exc) if isinstance(exc, DBAPIError) else str(exc)
    if isinstance(exc, DBAPIError | StoreUnavailable) and "locked" in reason:
        reason += (
            " (another process is writing to it: try again, or raise CDRHUB_SQLITE_BUSY_TIMEOUT_MS)"
        )
    return reason


@main.command()
@click.option("--from", "start", required=True, help="First day or time (configured zone).")
@click.option("--to", "end", required=True, help="Last day (included) or end time (excluded).")
@click.option("--restart", is_flag=True, help="Fetch a range again, even one already complete.")
@settings_options
def backfill(settings: Settings, start: str, end: str, restart: bool) -> None:
    """Pull every call in a range from NXCC's query API and store what is missing.

    \b
    Example:
        cdrhub backfill --from 2026-11-01 --to 2026-11-24
    Needs CDRHUB_NXCC_ACCESS_KEY and CDRHUB_NXCC_ACCESS_SECRET. Calls already stored stay
    as they are (one record per callId); run it again after an interruption and it resumes
    from its checkpoint. The last hour before now is fetched but not checkpointed (NXCC may
    still add calls to it): run the command again later to complete the range.
    """
    from zoneinfo import ZoneInfo

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cdrhub import backfill as heal

    start_s = _moment(start, settings, "--from")
    end_s = _moment(end, settings, "--to", end=True)
    if end_s <= start_s:
        raise click.BadParameter("must be after --from", param_hint="--to")
    zone = ZoneInfo(settings.timezone)
    _check_database(settings)
    store = _store(settings)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
    )
    try:
        with (
            _nxcc_client(settings) as client,
            Progress(*columns, console=Console(stderr=True)) as bar,
        ):
            total = len(list(heal.windows(start_s, end_s, zone=zone)))
            task = bar.add_task("Windows", total=total, counts="")

            def show(p: heal.Progress) -> None:
                t = p.tally
                counts = (
                    f"fetched {p.fetched}: new {t.created}, updated {t.updated}, "
                    f"unchanged {t.unchanged}, quarantined {t.quarantined}"
                )
                bar.update(task, completed=p.windows_done, counts=counts)

            result = heal.backfill(
                store, client, start_s, end_s, restart=restart, on_window=show, zone=zone
            )
            bar.update(task, completed=result.windows_done)
    except _pull_errors() as exc:
        raise click.ClickException(
            f"{_one_line(exc)}\nWhat was stored so far is kept; run the same command again "
            "to resume."
        ) from None
    finally:
        store.close()
    _backfill_summary(settings, result, end_s)


def _backfill_summary(settings: Settings, result: BackfillProgress, end_s: int) -> None:
    """What a backfill did, in one line (and a warning for a range not complete yet)."""
    from cdrhub.backfill import SETTLE_SECONDS

    if result.finished_at is not None:
        finished = _local(settings, result.finished_at.timestamp())
        click.echo(
            f"range already complete (finished at {finished}); use --restart to fetch it again."
        )
        return
    t = result.tally
    earlier = f" (of which {result.earlier_fetched} before it was interrupted)"
    click.echo(
        f"{result.fetched} calls fetched from NXCC{earlier if result.earlier_fetched else ''}: "
        f"{t.created} new, {t.updated} updated, {t.unchanged} unchanged, "
        f"{t.quarantined} quarantined."
    )
    if result.unsettled_from is not None:
        click.echo(
            f"Warning: from {_local(settings, result.unsettled_from)} on, NXCC may still add "
            "calls (a call shows only once it has ended), so that part is not checkpointed. "
            f"Run the same command again after {_local(settings, end_s + SETTLE_SECONDS)} to "
            "complete the range; a scheduled reconcile also heals recent hours.",
            err=True,
        )


@main.command()
@click.option("--since", default="24h", show_default=True, help="How far back: 24h, 3d, 2w.")
@settings_options
def reconcile(settings: Settings, since: str) -> None:
    """Compare, hour by hour, what NXCC has with what cdrhub has, and store the difference.

    \b
    Example:
        cdrhub reconcile --since 24h
    Only calls missing here, or different here, are stored; NXCC's invalid records are
    quarantined once. Hours are those of CDRHUB_TIMEZONE. CDRHUB_RECONCILE_EVERY_MINUTES
    runs this inside serve.
    """
    import time
    from zoneinfo import ZoneInfo

    from cdrhub import backfill as heal
    from cdrhub.maintenance import parse_age

    try:
        age = parse_age(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    now = int(time.time())
    _check_database(settings)
    store = _store(settings)
    zone = ZoneInfo(settings.timezone)
    try:
        with _nxcc_client(settings) as client:
            hours = heal.reconcile(store, client, now - int(age.total_seconds()), now, zone=zone)
    except _pull_errors() as exc:
        raise click.ClickException(_one_line(exc)) from None
    finally:
        store.close()
    table = Table(
        "hour", "NXCC", "cdrhub", "missing", "different", "only here", "quarantined", "stored"
    )
    for h in hours:
        values = (h.nxcc, h.cdrhub, h.missing, h.different, h.only_here, h.stored.quarantined)
        stored = h.stored.created + h.stored.updated
        table.add_row(_local(settings, h.start_s), *(str(v) for v in (*values, stored)))
    _console().print(table)
    stored = sum(h.stored.created + h.stored.updated for h in hours)
    missing = sum(h.missing for h in hours)
    different = sum(h.different for h in hours)
    quarantined = sum(h.stored.quarantined for h in hours)
    summary = f"{missing} missing and {different} different calls found; {stored} stored."
    if quarantined:
        summary += f" {quarantined} invalid at NXCC, in quarantine: see `cdrhub quarantine list`."
    click.echo(summary)


@main.command(name="import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@settings_options
def import_files(settings: Settings, files: tuple[Path, ...]) -> None:
    """Load call logs from files: JSON (an object or an array), JSON Lines, or CSV.

    \b
    Examples:
        cdrhub import calls.json more.jsonl console-export.csv
    CSV headers are the push's field names (callId, startTime, agentName...), as in the
    NXCC console's export, or the columns of `cdrhub export`; UTF-8, UTF-16 or GBK. Every
    file is read whole before anything is stored. Each record is checked like a push; one
    that fails is quarantined (`cdrhub quarantine list`), the rest are stored.
    """
    from cdrhub.imports import ImportFileError, Tally, read_file, store_records

    try:
        sources = [read_file(path) for path in files]
    except ImportFileError as exc:
        raise click.ClickException(f"{exc}. Nothing was stored.") from None
    _check_database(settings)
    store = _store(settings)
    table = Table("file", "records", "new", "updated", "unchanged", "quarantined")
    total = Tally()
    try:
        for source in sources:
            origin = str(source.path)
            try:
                tally = store_records(
                    store, source.records, origin=origin, spreadsheet=source.spreadsheet
                )
            except _pull_errors() as exc:
                raise click.ClickException(
                    f"{origin}: {_one_line(exc)}. What was stored is kept; importing the "
                    "same files again stores nothing twice."
                ) from None
            total.add(tally)
            counts = (tally.records, tally.created, tally.updated, tally.unchanged)
            table.add_row(origin, *(str(v) for v in (*counts, tally.quarantined)))
    finally:
        store.close()
    _console().print(table)
    if total.quarantined:
        click.echo(f"{total.quarantined} records quarantined: see `cdrhub quarantine list`.")


# -- dashboard users -------------------------------------------------------------------------------


@main.group(name="user")
def user_group() -> None:
    """People who sign in to the dashboard (API keys are for programs)."""


@user_group.command(name="create")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(["viewer", "admin"]),
    default="viewer",
    show_default=True,
    help="viewer: every page; admin: also replays quarantined payloads.",
)
@settings_options
def user_create(settings: Settings, name: str, role: str) -> None:
    """Create a dashboard user; the password is asked for (or read from standard input).

    \b
    Examples:
        cdrhub user create alice --role admin
        printf '%s\\n' "$PASSWORD" | cdrhub user create wall-screen
    Passwords are stored only as argon2id hashes.
    """
    from cdrhub import users

    password = _read_password()
    _check_database(settings)
    store = _store(settings)
    try:
        user = users.create(store, name, role, password)  # type: ignore[arg-type]
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"user {user.name} ({user.role}) created; sign in at /login")


def _read_password() -> str:
    """Asked for twice on a terminal; else the first line of standard input (scripts)."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


@user_group.command(name="passwd")
@click.argument("name")
@settings_options
def user_passwd(settings: Settings, name: str) -> None:
    """Set a new password for a dashboard user (asked for, or read from standard input).

    \b
    Example:
        cdrhub user passwd alice
    Every session signed in with the old password ends at its next click.
    """
    from cdrhub import users

    password = _read_password()
    store = _store(settings)
    try:
        if not users.set_password(store, name, password):
            raise click.ClickException(f"no user named {name!r} (see `cdrhub user list`)")
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"password of {name} changed")


@user_group.command(name="list")
@settings_options
def user_list(settings: Settings) -> None:
    """Every dashboard user and their role."""
    from cdrhub import users

    store = _store(settings)
    try:
        table = Table("name", "role", "created")
        for user in users.all_users(store):
            table.add_row(user.name, user.role, user.created_at.isoformat(timespec="seconds"))
    finally:
        store.close()
    _console().print(table)


@user_group.command(name="delete")
@click.argument("name")
@settings_options
def user_delete(settings: Settings, name: str) -> None:
    """Delete a dashboard user (their open sessions end at their next click)."""
    from cdrhub import users

    store = _store(settings)
    try:
        if not users.remove(store, name):
            raise click.ClickException(f"no user named {name!r}")
    finally:
        store.close()
    click.echo(f"user {name} deleted")
