"""``cdrhub stats`` and ``cdrhub export``: the filters, statistics and files of the HTTP API."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from cdrhub.ops import printable
from cdrhub.settings import Settings

if TYPE_CHECKING:

    pass

from cdrhub.cli._common import F, console, settings_options, store_for


def filter_options(func: F) -> F:
    """The /api/calls filters as options (``--from``, ``--agent``...), plus ``--tz``.

    The command receives them as ``filters``, a dict keyed by the API's parameter names, and
    parses them with the same ``query.parse_filters`` the API uses.
    """
    from cdrhub.reports import FILTERS, TZ_PARAM

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
    from cdrhub.errors import InvalidParameter
    from cdrhub.reports import query

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


@click.command()
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
    from cdrhub.errors import InvalidParameter
    from cdrhub.reports import stats as stats_module

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
    store = store_for(settings)
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
    console().print(table)


def _metric_values(group: dict[str, Any]) -> list[Any]:
    from cdrhub.reports import METRICS

    return [group[m] for m in METRICS]


def _show(value: Any) -> str:
    """Table cells: null as a dash, floats to three decimals."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@click.command(name="export")
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

    from cdrhub.errors import InvalidParameter
    from cdrhub.reports import export, query

    where, tz = _selection(settings, filters)
    chosen = fmt or (output.suffix.lstrip(".").lower() if output.suffix else "csv")
    try:
        file_format = export.parse_format(chosen)
    except InvalidParameter as error:
        raise click.ClickException(error.detail) from None
    store = store_for(settings)
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
