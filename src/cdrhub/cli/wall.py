"""``cdrhub wall link``: read-only wallboard links for a TV that nobody signs in on."""

from __future__ import annotations

import click
from rich.table import Table

from cdrhub.cli._common import console, settings_options, store_for
from cdrhub.settings import Settings

_ANY = ("0.0.0.0", "::")  # noqa: S104 - recognising "all interfaces" to print a useful URL


@click.group(name="wall")
def wall_group() -> None:
    """The wallboard (/wall): a full-screen view for a TV on the call-center floor."""


@wall_group.group(name="link")
def link_group() -> None:
    """Read-only links that open /wall without signing in (revocable)."""


def _base(settings: Settings) -> str:
    host = "<this-server>" if settings.host in _ANY else settings.host
    return (settings.public_url or f"http://{host}:{settings.port}").rstrip("/")


@link_group.command("create")
@click.option("--name", required=True, help="Where it is shown, e.g. floor-tv.")
@settings_options
def link_create(settings: Settings, name: str) -> None:
    """Create a wallboard link and print its address (the last line, alone).

    \b
    Example:
        cdrhub wall link create --name floor-tv
    The link is shown only now: cdrhub keeps its hash. Anyone with it sees the wallboard
    (figures only, no calls); revoke it with `cdrhub wall link revoke floor-tv`.
    """
    from cdrhub.auth import wallboard

    store = store_for(settings)
    try:
        link, token = wallboard.create_link(store, name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"Wallboard link #{link.id} {link.name!r} created; it is shown only once:")
    click.echo(f"{_base(settings)}/wall?link={token}")


@link_group.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked links.")
@settings_options
def link_list(settings: Settings, include_revoked: bool) -> None:
    """List wallboard links (their first characters only; the tokens are not kept).

    \b
    Example:
        cdrhub wall link list --all
    """
    from cdrhub.auth import wallboard

    store = store_for(settings)
    try:
        links = wallboard.list_links(store, include_revoked=include_revoked)
    finally:
        store.close()
    if not links:
        click.echo("No wallboard links. Create one with `cdrhub wall link create --name NAME`.")
        return
    table = Table("id", "name", "token starts", "created (UTC)", "revoked (UTC)")
    for k in links:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix + "…",
            k.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at else "",
        )
    console().print(table)


@link_group.command("revoke")
@click.argument("link")
@settings_options
def link_revoke(settings: Settings, link: str) -> None:
    """Revoke a wallboard link by id or name; the TV showing it gets 403 at its next refresh.

    \b
    Example:
        cdrhub wall link revoke floor-tv
    """
    from cdrhub.auth import wallboard

    store = store_for(settings)
    try:
        revoked = wallboard.revoke_link(store, link)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"Wallboard link #{revoked.id} {revoked.name!r} revoked.")
