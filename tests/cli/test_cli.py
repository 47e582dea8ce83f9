"""The ``cdrhub`` command, run in-process with Click's runner (and against a real server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdrhub.cdr import VENDOR_EXAMPLE
from cdrhub.cli import main
from cdrhub.settings import Settings
from cdrhub.store import Store, open_store
from cdrhub.store.migrate import head_revision
from tests.helpers import TOKEN, Push, Server
from tests.helpers.cli import db_env, run


def test_db_upgrade_then_status(tmp_path: Path) -> None:
    """`db upgrade` creates the schema once; `db status` then reports it current."""
    env = {"CDRHUB_DATABASE_URL": f"sqlite:///{tmp_path}/new.db"}
    before = run("db", "status", env=env)
    assert before.exit_code == 1 and "cdrhub db upgrade" in before.output
    head = head_revision()
    first = run("db", "upgrade", env=env)
    assert first.exit_code == 0 and f"upgraded from empty to {head}" in first.output
    again = run("db", "upgrade", env=env)
    assert f"already at {head}" in again.output
    status = run("db", "status", env=env)
    assert status.exit_code == 0 and f"{head} (needs {head})" in status.output


def test_serve_refuses_an_outdated_schema(tmp_path: Path) -> None:
    """`serve` on a database without the schema says which command fixes it, and exits 1."""
    env = {"CDRHUB_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db", "CDRHUB_TOKENS": "t" * 20}
    result = CliRunner().invoke(main, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 1
    assert "Run `cdrhub db upgrade`" in result.output
    assert "CDRHUB_AUTO_MIGRATE" in result.output


def test_config_masks_secrets(tmp_path: Path) -> None:
    """`config` prints the effective settings without one character of any secret: no
    token's last characters, no password in any URL (even with an `@` in it, or in the
    query), no NXCC key or secret, no metrics token, no session secret."""
    secrets = {
        "CDRHUB_TOKENS": "supersecret-token-qXa,other-secret-token-qXb",
        "CDRHUB_METRICS_TOKEN": "metrics-token-qXc",
        "CDRHUB_SESSION_SECRET": "session-secret-qXd",
        "CDRHUB_NXCC_ACCESS_KEY": "nxcc-key-qXe",
        "CDRHUB_NXCC_ACCESS_SECRET": "nxcc-secret-qXf",
    }
    env = {
        **secrets,
        "CDRHUB_DATABASE_URL": "postgresql://cdr:hun@ter2qXg@db.example:5432/cdrhub"
        "?sslmode=require&sslpassword=keypass-qXh",
        "CDRHUB_PUBLIC_URL": "https://ops:proxy-pass-qXi@cdr.example",
        "CDRHUB_DATA_DIR": str(tmp_path / "data"),
    }
    result = run("config", env=env)
    assert result.exit_code == 0
    assert "qX" not in result.output and "hun" not in result.output
    for name in ("metrics_token", "session_secret", "nxcc_access_key", "nxcc_access_secret"):
        assert f'\n{name} = "********"\n' in result.output
    assert 'tokens = ["********", "********"]' in result.output
    assert 'database_url = "postgresql://cdr:***@db.example:5432/cdrhub' in result.output
    assert "sslmode=require&sslpassword=***" in result.output
    assert 'public_url = "https://ops:***@cdr.example"' in result.output


def test_config_says_which_tokens_are_in_effect(tmp_path: Path) -> None:
    """`tokens = []` while data/token is what pushes must carry: `config` says so, with the
    file's path, and with the environment or a config file, says that one wins."""
    data = tmp_path / "data"
    base = {"CDRHUB_TOKENS": "", "CDRHUB_DATA_DIR": str(data)}
    assert "# tokens in effect: none yet: `cdrhub serve` generates one into " + str(
        (data / "token").resolve()
    ) in run("config", env=base).output
    data.mkdir()
    (data / "token").write_text("from-the-file-token-qXj\n")
    (data / "session.key").write_text("from-the-file-session-qXk\n")
    shown = run("config", env=base).output
    assert "tokens = []" in shown and "qX" not in shown
    assert f"# tokens in effect: 1 token from the token file {(data / 'token').resolve()}" in shown
    assert f"# session_secret in effect: from the file {(data / 'session.key').resolve()}" in shown
    config = tmp_path / "cdrhub.toml"
    config.write_text('tokens = ["from-the-config-qXl"]\n')
    # An empty CDRHUB_TOKENS would win over the file's tokens: unset it.
    unset: dict[str, str | None] = {**base, "CDRHUB_TOKENS": None}
    configured = CliRunner().invoke(main, ["config", "--config", str(config)], env=unset)
    assert "qX" not in configured.output
    assert (
        f"# tokens in effect: 1 token from the config file {config.resolve()} (tokens); "
        f"{(data / 'token').resolve()} is not used"
    ) in configured.output
    environment = run("config", "--config", str(config), env={**base, "CDRHUB_TOKENS": "a-qXm"})
    assert "qX" not in environment.output
    assert "# tokens in effect: 1 token from the environment (CDRHUB_TOKENS)" in environment.output


def test_settings_come_from_a_toml_file_and_env_wins(tmp_path: Path) -> None:
    """A TOML file sets values; a CDRHUB_* variable overrides the same value."""
    config = tmp_path / "cdrhub.toml"
    config.write_text('port = 9000\ntimezone = "Asia/Shanghai"\ncallback_paths = ["/a", "/b"]\n')
    result = run("--help", env={})
    assert result.exit_code == 0
    shown = run("config", "--config", str(config), env={"CDRHUB_PORT": "9100"})
    assert "port = 9100" in shown.output
    assert 'timezone = "Asia/Shanghai"' in shown.output
    assert 'callback_paths = ["/a", "/b"]' in shown.output


def test_invalid_settings_name_the_variable() -> None:
    """A bad value is one clear line naming the CDRHUB_ variable, not a traceback."""
    result = CliRunner().invoke(main, ["config"], env={"CDRHUB_TIMEZONE": "Mars/Base"})
    assert result.exit_code == 1
    assert "CDRHUB_TIMEZONE" in result.output and "Asia/Shanghai" in result.output


def test_token_new_add_keeps_old_tokens_for_rotation(tmp_path: Path) -> None:
    """`token new --add` appends to the token file, `--save` replaces it."""
    env = {"CDRHUB_DATA_DIR": str(tmp_path), "CDRHUB_TOKENS": ""}
    first = run("token", "new", "--save", env=env).output.split()[0]
    second = run("token", "new", "--add", env=env).output.split()[0]
    assert (tmp_path / "token").read_text().split() == [first, second]
    assert (tmp_path / "token").stat().st_mode & 0o077 == 0
    printed = run("token", "new", env=env).output.strip()
    assert len(printed) >= 40 and printed not in (tmp_path / "token").read_text()


def test_quarantine_list_show_and_replay(push: Push, settings: Settings, store: Store) -> None:
    """An operator lists refused bodies, reads one, and replays what today's rules accept."""
    wrong_type = push(VENDOR_EXAMPLE, content_type="text/plain")
    assert wrong_type.status_code == 415
    invalid = push({"callId": "bad-1", "direction": 7})
    assert invalid.status_code == 422
    env = db_env(settings)

    listing = run("quarantine", "list", env=env)
    assert "unsupported_media_type" in listing.output and "invalid_record" in listing.output
    entries = store.quarantined()
    by_reason = {e["reason"]: e["id"] for e in entries}

    shown = run("quarantine", "show", str(by_reason["invalid_record"]), env=env)
    assert "direction: got 7" in shown.output
    assert '"direction": 7' in shown.output or '"direction":7' in shown.output
    assert TOKEN not in shown.output

    replayed = run("quarantine", "replay", "--all", env=env)
    assert replayed.exit_code == 1  # one entry is still invalid
    assert f"#{by_reason['unsupported_media_type']}: stored: created" in replayed.output
    assert f"#{by_reason['invalid_record']}: not stored: still refused" in replayed.output
    row = store.get_call(VENDOR_EXAMPLE["callId"])
    assert row is not None and row["source"] == "replay"

    again = run("quarantine", "replay", str(by_reason["unsupported_media_type"]), env=env)
    assert "already replayed" in again.output
    assert store.count_calls() == 1
    remaining = run("quarantine", "list", env=env)
    assert "unsupported_media_type" not in remaining.output


def test_quarantine_show_unknown_entry(settings: Settings) -> None:
    """Asking for an entry that does not exist says how to find the right one."""
    result = CliRunner().invoke(main, ["quarantine", "show", "999"], env=db_env(settings))
    assert result.exit_code == 1 and "cdrhub quarantine list" in result.output


def test_quarantine_ids_and_limits_past_64_bits(settings: Settings, store: Store) -> None:
    """An id or a limit no 64-bit column can hold is "no such entry" or all entries, not a
    driver traceback; a limit below 1 is a usage error naming the option."""
    from cdrhub.store import Rejected

    store.quarantine(Rejected(body=b"{", status=400, reason="bad_json", detail={}))
    env = db_env(settings)
    for entry in (str(2**70), str(2**63), "-1"):
        for command in ("show", "replay"):
            result = CliRunner().invoke(main, ["quarantine", command, "--", entry], env=env)
            assert result.exit_code == 1, (command, entry, result.output)
            assert f"no quarantine entry #{entry}" in result.output
    listed = run("quarantine", "list", "--limit", str(2**70), env=env)
    assert listed.exit_code == 0 and "bad_json" in listed.output
    refused = CliRunner().invoke(main, ["quarantine", "list", "--limit", "-5"], env=env)
    assert refused.exit_code == 2 and "--limit" in refused.output


def test_send_posts_the_vendor_example_to_a_real_server(
    serve: Callable[..., Server], settings: Settings
) -> None:
    """`cdrhub send` pushes like NXCC; the second send is a duplicate, not a second call."""
    server = serve()
    url = f"{server.url}/cc/callback"
    first = run("send", "--url", url, "--token", TOKEN)
    assert first.exit_code == 0 and '"result":"created"' in first.output
    second = run("send", "--url", url, "--token", TOKEN)
    assert '"result":"duplicate"' in second.output
    fresh = run("send", "--url", url, "--token", TOKEN, "--new-id")
    assert '"result":"created"' in fresh.output
    refused = CliRunner().invoke(main, ["send", "--url", url, "--token", "wrong"])
    assert refused.exit_code == 1 and "401" in refused.output
    handle = open_store(settings.database_url)
    try:
        assert handle.count_calls() == 2
    finally:
        handle.close()


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["send"],
        ["db", "upgrade"],
        ["db", "status"],
        ["quarantine", "list"],
        ["quarantine", "show"],
        ["quarantine", "replay"],
        ["token", "new"],
        ["config"],
    ],
)
def test_every_command_has_help_with_an_example_or_description(command: list[str]) -> None:
    """`--help` on each command says what it does."""
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: " in result.output and len(result.output.splitlines()) > 4


def test_serve_shows_a_generated_token_whole_once_then_masked(tmp_path: Path) -> None:
    """The banner is what an operator reads to configure NXCC, and under systemd it is also
    what journald keeps: the token appears whole on the start that generated it, masked on
    every later start."""
    env = {
        "CDRHUB_DATABASE_URL": f"sqlite:///{tmp_path / 'cdr.db'}",
        "CDRHUB_DATA_DIR": str(tmp_path / "data"),
        "CDRHUB_TOKENS": "",
    }
    run("db", "upgrade", env=env)
    logs = []
    for n in range(2):
        log = tmp_path / f"serve-{n}.log"
        Server(env, log).stop()
        logs.append(log.read_text(encoding="utf-8"))
    token = (tmp_path / "data" / "token").read_text(encoding="utf-8").strip()
    assert len(token) >= 20
    assert token in logs[0] and "generated now" in logs[0]
    assert token not in logs[1]
    assert token[:6] not in logs[1]
    assert "from " in logs[1] and "cat" in logs[1]
