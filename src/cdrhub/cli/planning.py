"""``cdrhub report intervals|agents|staffing``: the planning reports of /api/reports/*."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from cdrhub.cli._common import F, console, settings_options, store_for
from cdrhub.cli.reports import _option_error, _selection, filter_options
from cdrhub.ops import printable
from cdrhub.settings import Settings


@click.group(name="report")
def report_group() -> None:
    """Planning reports: the interval report, the agent report, Erlang C staffing.

    \b
    Examples:
        cdrhub report intervals --from 2026-11-24 --interval 15
        cdrhub report agents --from 2026-11-01 --to 2026-12-01 --sort -talk_seconds
        cdrhub report staffing --from 2026-11-24 --sl-target 0.8 --sl-seconds 20
        cdrhub report intervals --from 2026-11-01 --to 2026-12-01 -o november.xlsx
    Without --from, today in --tz; without --to, one day after --from (intervals, staffing).
    """


def _report_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--interval",
                type=click.Choice(["15", "30", "60"]),
                default="30",
                show_default=True,
                help="Interval length in minutes.",
            ),
            click.option(
                "--sl-target", help="Staffing target, a fraction such as 0.8 (default 0.8)."
            ),
            click.option("--sl-seconds", type=float, help="Service level threshold (settings)."),
            click.option(
                "--short-abandon-seconds", type=float, help="Short-abandon threshold (settings)."
            ),
            click.option("--sort", help="Agents: column to sort by, - first for descending."),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["table", "json", "csv", "xlsx"]),
                help="Default: from the --output file's extension, else table.",
            ),
            click.option(
                "--output",
                "-o",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Write to this file instead of the terminal ('-': standard output).",
            ),
        ]
    ):
        func = option(func)
    return func


def _command(kind: str, doc: str) -> click.Command:
    @click.command(name=kind, help=doc)
    @filter_options
    @_report_options
    @settings_options
    def command(
        settings: Settings,
        filters: dict[str, str | None],
        interval: str,
        sl_target: str | None,
        sl_seconds: float | None,
        short_abandon_seconds: float | None,
        sort: str | None,
        fmt: str | None,
        output: Path | None,
    ) -> None:
        run(
            kind, settings, filters, interval, sl_target, sl_seconds, short_abandon_seconds,
            sort, fmt, output,
        )  # fmt: skip

    return command


def run(
    kind: str,
    settings: Settings,
    filters: dict[str, str | None],
    interval: str,
    sl_target: str | None,
    sl_seconds: float | None,
    short_abandon_seconds: float | None,
    sort: str | None,
    fmt: str | None,
    output: Path | None,
) -> None:
    """Parse like the API, run the report, write it as asked."""
    from cdrhub.errors import InvalidParameter
    from cdrhub.reports import planning, sheets

    where, tz = _selection(settings, filters)
    for name, value in (
        ("sl-seconds", sl_seconds),
        ("short-abandon-seconds", short_abandon_seconds),
    ):
        if value is not None and value < 0:
            raise click.BadParameter("must be 0 or more", param_hint=f"--{name}")
    suffix = output.suffix.lstrip(".").lower() if output and str(output) != "-" else ""
    chosen = fmt or (suffix if suffix in ("json", "csv", "xlsx") else "table")
    if chosen == "xlsx" and (output is None or str(output) == "-"):
        raise click.UsageError("xlsx is a binary file: give it a name with --output FILE.xlsx")
    try:
        options = planning.parse_options(
            {"interval": interval, "sl_target": sl_target, "sort": sort},
            tz=tz,
            sl_seconds=settings.service_level_seconds if sl_seconds is None else sl_seconds,
            short_abandon_seconds=settings.short_abandon_seconds
            if short_abandon_seconds is None
            else short_abandon_seconds,
        )
        store = store_for(settings)
        try:
            result = planning.run(kind, store, where, options)
        finally:
            store.close()
    except InvalidParameter as error:
        raise _option_error(error) from None
    header, rows = planning.table(kind, result)
    if chosen == "json":
        data = json.dumps(result, ensure_ascii=False, indent=2).encode() + b"\n"
    elif chosen == "csv":
        data = sheets.to_csv(header, rows, bom=output is not None and str(output) != "-")
    elif chosen == "xlsx":
        data = sheets.to_xlsx([(kind.capitalize(), header, rows)])
    else:
        _print_table(header, rows)
        return
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        output.write_bytes(data)
        click.echo(f"{len(rows)} rows written to {output} ({chosen}).", err=True)


def show(value: Any, kind: str) -> str:
    """A cell for a person: counts whole, seconds to 0.1, ratios as percentages to 0.1."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return printable(value)
    if kind == "ratio":
        return f"{value * 100:.1f}%"
    if kind == "seconds":
        return f"{value:,.1f}"
    if kind == "erlangs":
        return f"{value:.2f}"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def _print_table(header: list[str], rows: list[list[Any]]) -> None:
    """As many columns as the terminal holds without cutting a cell; the rest are left out
    with a note (``--format csv`` or ``json`` has them all)."""
    from cdrhub.reports.planning import KIND_OF

    shown = [i for i, h in enumerate(header) if h not in ("end", "minutes")]  # start says it
    header = [header[i] for i in shown]
    rows = [[row[i] for i in shown] for row in rows]
    cells = [
        [show(v, KIND_OF.get(h, "")) for v, h in zip(row, header, strict=True)] for row in rows
    ]
    titles = [h.replace("_seconds", " s").replace("_", " ") for h in header]
    width = shutil.get_terminal_size((120, 24)).columns
    used, keep = 4, 0
    for col, title in enumerate(titles):
        need = max([len(title), *(len(r[col]) for r in cells)]) + 3
        if used + need > width and keep >= 2:
            break
        used, keep = used + need, keep + 1
    table = Table(*titles[:keep], header_style="bold")
    for col in table.columns:
        col.no_wrap = True
    for col in range(1, keep):
        if KIND_OF.get(header[col]) or header[col].endswith(("_handled", "_answered")):
            table.columns[col].justify = "right"
    for row in cells:
        table.add_row(*row[:keep])
    out = console()
    out.width = max(width, used)
    out.print(table)
    if keep < len(header):
        left = ", ".join(header[keep:])
        click.echo(f"({len(header) - keep} more columns: {left}; a wider terminal or "
                   "--format csv shows them)", err=True)  # fmt: skip


for _kind, _doc in (
    ("intervals", "Every 15/30/60 minutes: offered, answered, abandoned, service level, ASA, "
                  "AHT, longest wait (GET /api/reports/intervals)."),
    ("agents", "Per agent: handled, answered, missed, talk time, share of answered, first and "
               "last call (GET /api/reports/agents)."),
    ("staffing", "Erlang C agents needed per interval for --sl-target within --sl-seconds, and "
                 "the ASA that gives (GET /api/reports/staffing)."),
):  # fmt: skip
    report_group.add_command(_command(_kind, _doc))
