"""Who may do what: the push ``token``, API keys (``apikey``) and dashboard accounts (``user``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click
from rich.table import Table

from cdrhub.ingest import new_token, read_token_file, write_token_file
from cdrhub.settings import Settings

if TYPE_CHECKING:

    pass

from cdrhub.cli._common import check_database, console, settings_options, store_for


@click.group()
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


@click.group()
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
    from cdrhub.auth import create_key

    store = store_for(settings)
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
    from cdrhub.auth import list_keys

    store = store_for(settings)
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
    console().print(table)


@apikey.command("revoke")
@click.argument("key")
@settings_options
def apikey_revoke(settings: Settings, key: str) -> None:
    """Revoke an API key by id or name; requests with it get 401 from now on.

    \b
    Example:
        cdrhub apikey revoke crm-sync
    """
    from cdrhub.auth import revoke_key

    store = store_for(settings)
    try:
        revoked = revoke_key(store, key)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"API key #{revoked.id} {revoked.name!r} revoked.")


@click.group(name="user")
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
    from cdrhub.auth import users

    password = _read_password()
    check_database(settings)
    store = store_for(settings)
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
    from cdrhub.auth import users

    password = _read_password()
    store = store_for(settings)
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
    from cdrhub.auth import users

    store = store_for(settings)
    try:
        table = Table("name", "role", "created")
        for user in users.all_users(store):
            table.add_row(user.name, user.role, user.created_at.isoformat(timespec="seconds"))
    finally:
        store.close()
    console().print(table)


@user_group.command(name="delete")
@click.argument("name")
@settings_options
def user_delete(settings: Settings, name: str) -> None:
    """Delete a dashboard user (their open sessions end at their next click)."""
    from cdrhub.auth import users

    store = store_for(settings)
    try:
        if not users.remove(store, name):
            raise click.ClickException(f"no user named {name!r}")
    finally:
        store.close()
    click.echo(f"user {name} deleted")

