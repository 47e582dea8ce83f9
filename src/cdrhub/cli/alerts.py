"""``cdrhub alert ...``: rules that tell people, through Apprise, when something is wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click
from rich.table import Table

from cdrhub.alerts import Evaluator, format_duration, format_value, rules
from cdrhub.cli._common import check_database, console, settings_options, store_for
from cdrhub.errors import CdrhubError
from cdrhub.settings import Settings
from cdrhub.store import Store


def _when(ms: int | None, settings: Settings) -> str:
    if ms is None:
        return "-"
    moment = datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(settings.timezone))
    return moment.isoformat(timespec="seconds")


def _require(store: Store, name: str) -> rules.Rule:
    try:
        return rules.require(store, name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None


def _fail(exc: CdrhubError) -> click.ClickException:
    return click.ClickException(exc.detail)  # it names the value and what would do


@click.group(name="alert")
def alert_group() -> None:
    """Tell people when something is wrong: DingTalk, Feishu, WeCom, Slack, Teams, e-mail.

    \b
    One notification when a rule starts firing, one when it resolves; targets are Apprise
    URLs. `serve` evaluates the rules every CDRHUB_ALERT_EVALUATE_SECONDS. See docs/alerts.md.
    """


@alert_group.command("add")
@click.argument("name")
@click.argument("condition")
@click.option(
    "--window",
    default="15m",
    show_default=True,
    help="The last N minutes the figure covers (30m, 2h, 90s).",
)
@click.option(
    "--min-calls",
    type=int,
    default=0,
    show_default=True,
    help="Queued calls the window needs before the rule may fire.",
)
@click.option(
    "--direction", type=click.Choice(list(rules.DIRECTIONS)), help="Only calls of this direction."
)
@click.option("--task", "task_id", help="Only calls of this NXCC task id.")
@click.option(
    "--hours", help="When the rule may fire, HH:MM-HH:MM (default CDRHUB_BUSINESS_HOURS and _DAYS)."
)
@click.option(
    "--lang",
    "language",
    type=click.Choice(list(rules.LANGUAGES)),
    default="en",
    show_default=True,
    help="Language of the notifications.",
)
@click.option(
    "--notify",
    "targets",
    multiple=True,
    required=True,
    help="An Apprise URL to tell (repeat for several): dingtalk://, slack://, ...",
)
@settings_options
def alert_add(
    settings: Settings,
    name: str,
    condition: str,
    window: str,
    min_calls: int,
    direction: str | None,
    task_id: str | None,
    hours: str | None,
    language: str,
    targets: tuple[str, ...],
) -> None:
    """Add a rule NAME that fires on CONDITION.

    \b
    Conditions (each explained in docs/alerts.md):
        "service_level < 80%"   "abandon_rate > 10%"   "asa > 30s"
        no_pushes   "refused > 20"   "spool_age > 5m"   destination_failing
        "unpushed_calls > 0"
    \b
    Examples:
        cdrhub alert add low-sl "service_level < 80%" --window 30m --min-calls 20 \\
            --notify "dingtalk://TOKEN/?secret=SECRET"
        cdrhub alert add silence no_pushes --window 15m --hours 08:00-20:00 \\
            --notify "slack://T000/B000/XXXX/#ops"
    """
    check_database(settings)
    store = store_for(settings)
    try:
        added = rules.add(
            store,
            name,
            condition,
            window=window,
            min_calls=min_calls,
            direction=direction,
            task_id=task_id,
            hours=hours,
            language=language,
            targets=list(targets),
        )
    except CdrhubError as exc:
        raise _fail(exc) from None
    finally:
        store.close()
    shown = added.public()
    click.echo(
        f"Added {added.name}: {shown['condition']} over {format_duration(added.window_seconds)}"
        f", telling {', '.join(shown['notify'])}"
    )


@alert_group.command("list")
@settings_options
def alert_list(settings: Settings) -> None:
    """Every rule: its condition, window, status, last figure and targets (masked)."""
    store = store_for(settings)
    try:
        found = rules.all_rules(store)
    finally:
        store.close()
    table = Table("name", "condition", "window", "status", "figure", "since", "notify")
    for rule in found:
        shown = rule.public()
        table.add_row(
            rule.name,
            shown["condition"],
            format_duration(rule.window_seconds),
            shown["status"],
            format_value(rule.condition.kind, rule.last_value)
            if rule.condition.kind != "no_pushes" or rule.last_value is None
            else format_duration(rule.last_value),
            _when(rule.firing_since_ms, settings),
            "\n".join(shown["notify"]),
        )
    console().print(table)


@alert_group.command("show")
@click.argument("name")
@settings_options
def alert_show(settings: Settings, name: str) -> None:
    """One rule as JSON (targets masked), with its last 20 notifications."""
    store = store_for(settings)
    try:
        rule = _require(store, name)
        shown = rule.public() | {"history": rules.history(store, name, limit=20)}
    finally:
        store.close()
    click.echo(json.dumps(shown, indent=2, ensure_ascii=False))


def _set_state(settings: Settings, name: str, state: str) -> None:
    store = store_for(settings)
    try:
        changed = rules.set_state(store, name, state)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"{changed.name} is {changed.state}.")


@alert_group.command("pause")
@click.argument("name")
@settings_options
def alert_pause(settings: Settings, name: str) -> None:
    """Stop evaluating NAME (a firing rule is forgotten, without a "resolved")."""
    _set_state(settings, name, "paused")


@alert_group.command("resume")
@click.argument("name")
@settings_options
def alert_resume(settings: Settings, name: str) -> None:
    """Evaluate NAME again, from a clean state."""
    _set_state(settings, name, "active")


@alert_group.command("remove")
@click.argument("name")
@settings_options
def alert_remove(settings: Settings, name: str) -> None:
    """Delete NAME; its notification history stays."""
    store = store_for(settings)
    try:
        rules.remove(store, name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(f"Removed {name}.")


@alert_group.command("test")
@click.argument("name")
@settings_options
def alert_test(settings: Settings, name: str) -> None:
    """Send a sample notification of NAME now, and print what each target answered."""
    store = store_for(settings)
    try:
        rule = _require(store, name)
        deliveries = Evaluator(store, settings).test(rule)
    finally:
        store.close()
    failed = 0
    for d in deliveries:
        verdict = "delivered" if d.delivered else f"FAILED after {d.attempts} tries"
        click.echo(f"{d.target}: {verdict}")
        for line in (d.answer or "(no answer)").splitlines():
            click.echo(f"    {line}")
        failed += not d.delivered
    if failed:
        raise click.ClickException(f"{failed} of {len(deliveries)} targets did not take it")
