"""The database's life: ``db upgrade``/``db status``, ``prune`` (retention) and ``backup``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdrhub.settings import Settings, mask_url

if TYPE_CHECKING:

    pass

from cdrhub.cli._common import settings_options, store_for


@click.group()
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
    store = store_for(settings)
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
    store = store_for(settings)
    try:
        current, head = store.schema_status()
    finally:
        store.close()
    click.echo(f"database: {mask_url(settings.database_url)}")
    click.echo(f"schema:   {current or 'empty'} (needs {head})")
    if current != head:
        click.echo("Run `cdrhub db upgrade` to bring it up to date.")
        sys.exit(1)


@click.command()
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
    from cdrhub.ops import parse_age
    from cdrhub.ops import prune as prune_store

    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    store = store_for(settings)
    try:
        counts = prune_store(store, age, dry_run=dry_run)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {counts['calls']} calls, {counts['raw_versions']} raw versions, "
        f"{counts['quarantine']} quarantine entries older than {older_than}"
    )


@click.command()
@click.argument("destination", type=click.Path(dir_okay=False, path_type=Path))
@settings_options
def backup(settings: Settings, destination: Path) -> None:
    """Copy the SQLite database to DESTINATION, consistently, while serve keeps running.

    \b
    Example:
        cdrhub backup backups/cdrhub-$(date +%F).db
    For PostgreSQL use its own tools: pg_dump -Fc -f cdrhub.dump cdrhub
    """
    from cdrhub.ops import backup as backup_store

    store = store_for(settings)
    try:
        size = backup_store(store, destination)
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"backed up to {destination} ({size:,} bytes)")
