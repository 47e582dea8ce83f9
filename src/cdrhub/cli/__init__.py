"""The ``cdrhub`` command: one module per command group, all registered on ``main`` here.

Each command is a thin wrapper over the same functions the HTTP app uses; Rich output stays
here. Run without a command, ``cdrhub`` serves.
"""

from __future__ import annotations

import click

from cdrhub import __version__
from cdrhub.cli.access import apikey, token, user_group
from cdrhub.cli.alerts import alert_group
from cdrhub.cli.db import backup, db, prune
from cdrhub.cli.forward import forward_group
from cdrhub.cli.planning import report_group
from cdrhub.cli.pull import backfill, import_files, reconcile, simulate
from cdrhub.cli.quarantine import quarantine_group
from cdrhub.cli.reports import export_command, stats
from cdrhub.cli.serve import config, send, serve
from cdrhub.cli.wall import wall_group


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


for _command in (
    forward_group,
    alert_group,
    serve,
    send,
    config,
    db,
    prune,
    backup,
    quarantine_group,
    token,
    apikey,
    user_group,
    stats,
    report_group,
    export_command,
    simulate,
    backfill,
    reconcile,
    import_files,
    wall_group,
):
    main.add_command(_command)
