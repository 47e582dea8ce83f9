"""Calls not pushed: ``backfill``/``reconcile`` from NXCC's API, ``import``, ``simulate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from cdrhub import cdr
from cdrhub.ingest import accepted_tokens
from cdrhub.settings import Settings
from cdrhub.store import Store

if TYPE_CHECKING:
    from rich.progress import Progress

    from cdrhub.pull import Progress as BackfillProgress

from cdrhub.cli._common import check_database, console, moment, settings_options, store_for


@click.command()
@click.option("--count", default=1000, show_default=True, help="How many calls.")
@click.option("--seed", default=1, show_default=True, help="Same seed, same calls.")
@click.option("--days", default=30, show_default=True, help="Spread over this many days.")
@click.option("--end", help="Last day (ISO date, default today), in the zone; never past now.")
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

    from cdrhub.pull import simulate as sim
    from cdrhub.store import Push

    tz = ZoneInfo(settings.timezone)
    last = datetime.fromisoformat(end).date() if end else datetime.now(tz).date()
    # Up to the end of the last day, but never past now: NXCC pushes calls that have ended.
    until = min(
        datetime(last.year, last.month, last.day, tzinfo=tz) + timedelta(days=1),
        datetime.now(tz),
    )
    try:
        bodies = sim.calls(count, seed=seed, end=until, days=days, tz=tz)
    except sim.NoRoomError as error:
        raise click.ClickException(f"{error}: pass a larger --days or an earlier --end") from None
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("Simulating", total=count)
        if url:
            if token is None:
                tokens, _ = accepted_tokens(settings)
                if not tokens:
                    raise click.ClickException("no token to send: pass --token")
                token = tokens[0]
            import httpx  # here, not at import: every `cdrhub` command would pay for it

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
            check_database(settings)
            store = store_for(settings)
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
    from cdrhub.reports import rollup

    if store.kind == "postgresql":  # a bulk load leaves the planner's estimates behind
        with store.writing() as conn:
            conn.exec_driver_sql("ANALYZE calls")
    stale = rollup.stale_count(store)
    if stale:
        task = progress.add_task("Statistics snapshots (hours)", total=stale)
        rollup.refresh(store, progress=lambda done: progress.advance(task, done))


# -- healing from NXCC's query API, and files -----------------------------------------------------


def _nxcc_client(settings: Settings) -> Any:
    from cdrhub.pull import NxccError, from_settings

    try:
        return from_settings(settings)
    except NxccError as exc:
        raise click.ClickException(str(exc)) from None


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
    from cdrhub.pull import NxccError

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


@click.command()
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

    from cdrhub.pull import backfill as heal

    start_s = moment(start, settings, "--from")
    end_s = moment(end, settings, "--to", end=True)
    if end_s <= start_s:
        raise click.BadParameter("must be after --from", param_hint="--to")
    zone = ZoneInfo(settings.timezone)
    check_database(settings)
    store = store_for(settings)
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
    from cdrhub.pull import SETTLE_SECONDS

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


@click.command()
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

    from cdrhub.ops import parse_age
    from cdrhub.pull import backfill as heal

    try:
        age = parse_age(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    now = int(time.time())
    check_database(settings)
    store = store_for(settings)
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
    console().print(table)
    stored = sum(h.stored.created + h.stored.updated for h in hours)
    missing = sum(h.missing for h in hours)
    different = sum(h.different for h in hours)
    quarantined = sum(h.stored.quarantined for h in hours)
    summary = f"{missing} missing and {different} different calls found; {stored} stored."
    if quarantined:
        summary += f" {quarantined} invalid at NXCC, in quarantine: see `cdrhub quarantine list`."
    click.echo(summary)


@click.command(name="import")
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
    from cdrhub.pull import ImportFileError, Tally, read_file, store_records

    try:
        sources = [read_file(path) for path in files]
    except ImportFileError as exc:
        raise click.ClickException(f"{exc}. Nothing was stored.") from None
    check_database(settings)
    store = store_for(settings)
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
    console().print(table)
    if total.quarantined:
        click.echo(f"{total.quarantined} records quarantined: see `cdrhub quarantine list`.")


# -- dashboard users -------------------------------------------------------------------------------
