"""``cdrhub serve`` (the default command), ``send`` (a push as NXCC sends it) and ``config``."""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import click

from cdrhub import __version__, cdr
from cdrhub.ingest import accepted_tokens, session_secret_source, token_source
from cdrhub.ops import configure_logging
from cdrhub.settings import Settings, mask_secret, mask_url

if TYPE_CHECKING:
    pass

from cdrhub.cli._common import check_database, console, settings_options


@click.command()
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
    check_database(settings)
    _print_banner(settings, tokens, generated)
    run(settings)


_ANY = ("0.0.0.0", "::")  # noqa: S104 - recognising "all interfaces" to print a useful URL


def _print_banner(settings: Settings, tokens: list[str], generated: bool) -> None:
    base = settings.public_url or (
        f"http://{'<this-server>' if settings.host in _ANY else settings.host}:{settings.port}"
    )
    out = console(markup=True)
    out.print(f"[bold]cdrhub {__version__}[/] on {mask_url(settings.database_url)}")
    out.print("Configure NXCC's call-log push (call center settings) with:")
    for path in settings.callback_paths:
        out.print(f"  URL:   [bold]{base.rstrip('/')}{path}[/]")
    if settings.tokens:
        shown = ", ".join(mask_secret(t) for t in tokens) + f"  ({token_source(settings)})"
    elif generated:
        # Shown whole once, when it is made: the operator needs it to configure NXCC now.
        shown = f"{tokens[0]}  (generated now, saved in {settings.token_file})"
    else:
        # Every later start goes to a terminal, or to journald under systemd: masked there,
        # with the file that holds it for whoever may read that file.
        shown = f"{mask_secret(tokens[0])}  (from {settings.token_file}; `cat` it to see it whole)"
    out.print(f"  token: [bold]{shown}[/]", highlight=False)
    if settings.host == "127.0.0.1":
        out.print("Listening on loopback only: use --host 0.0.0.0 so NXCC can reach it.")


@click.command()
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
    import httpx  # here, not at import: every `cdrhub` command would pay for it

    try:
        response = httpx.post(
            target,
            content=body,
            headers={"token": token, "Content-Type": "application/json"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise click.ClickException(f"could not reach {target}: {exc}") from None
    console().print(f"{response.status_code} {response.reason_phrase}", highlight=False)
    click.echo(response.text)
    if response.status_code != 200:
        sys.exit(1)


@click.command()
@settings_options
def config(settings: Settings) -> None:
    """Print the effective settings (secrets masked) as TOML-style lines.

    No character of a secret is shown. Comments say where the push tokens and the session
    secret in effect come from: the environment, a config file, or a file under data_dir.

    \b
    Example:
        CDRHUB_CONFIG=/etc/cdrhub.toml cdrhub config
    """
    # Secrets in effect that no setting shows (a generated token or session key lives in a
    # file), as TOML comments: where each comes from, never a character of it.
    sources = {"tokens": token_source, "session_secret": session_secret_source}
    for name, value in settings.masked().items():
        click.echo(f"{name} = {json.dumps(value, ensure_ascii=False)}")
        if name in sources:
            click.echo(f"# {name} in effect: {sources[name](settings)}")
