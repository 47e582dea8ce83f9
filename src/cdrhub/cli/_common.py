"""What every command shares: the settings options, the store it opens, the console."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console

from cdrhub.errors import SchemaOutdated
from cdrhub.ops import memory
from cdrhub.settings import Settings, load_settings, mask_url
from cdrhub.store import Store, open_store

if TYPE_CHECKING:

    pass


F = TypeVar("F", bound=Callable[..., Any])


def console(*, markup: bool = False) -> Console:
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


def store_for(settings: Settings) -> Store:
    memory.keep_freed_memory(settings.keep_freed_memory_mb)
    try:
        return open_store(
            settings.database_url,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            fact_cache_bytes=settings.stats_cache_mb * 2**20,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def check_database(settings: Settings) -> None:
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


def moment(text: str, settings: Settings, param: str, *, end: bool = False) -> int:
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
