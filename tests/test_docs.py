"""The docs describe the program that exists: every setting, command and script they name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
from click.testing import CliRunner

from cdrhub.cli import main
from cdrhub.settings import Settings
from tests.helpers import REPO, free_port

ROOT = REPO


def settings_table() -> str:
    """The settings table of docs/settings.md, from the Settings fields' own descriptions."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list):
            default = ",".join(map(str, default)) or "(none)"
        rows.append(f"| `CDRHUB_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(rows) + "\n"


def test_every_setting_is_documented() -> None:
    """docs/settings.md's table is exactly the settings that exist (scripts/cli-docs refreshes)."""
    text = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `CDRHUB_([A-Z_]+)`", text, re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}
    assert settings_table() in text


def test_readme_commands_exist() -> None:
    """Every `cdrhub ...` command in the README's table is a real command."""
    text = (ROOT / "README.md").read_text()
    for line in re.findall(r"^\| `cdrhub ([a-z ]+)", text, re.MULTILINE):
        group: click.Command = main
        for word in line.split():
            assert isinstance(group, click.Group), line
            found = group.get_command(click.Context(group), word)
            assert found is not None, f"README names `cdrhub {line}`, which does not exist"
            group = found


def test_quickstart_scripts_exist_and_are_executable() -> None:
    """The README's two quickstart commands are there to run."""
    readme = (ROOT / "README.md").read_text()
    for script in ("scripts/serve", "scripts/test"):
        assert f"{script} " in readme
        assert os.access(ROOT / script, os.X_OK)


def _commands(group: click.Group, prefix: list[str]) -> list[list[str]]:
    found = []
    for name in sorted(group.list_commands(click.Context(group))):
        command = group.get_command(click.Context(group), name)
        path = [*prefix, name]
        found.append(path)
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


def cli_reference() -> str:
    """docs/cli.md: every command's --help, as the program prints it."""
    parts = [
        "# CLI reference\n\n",
        "Generated from `--help` by `scripts/cli-docs`; `tests/test_docs.py` fails when it is\n"
        "out of date.\n",
    ]
    for path in [[], *_commands(main, [])]:
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="cdrhub", terminal_width=100)
        title = " ".join(["cdrhub", *path])
        parts.append(f"\n## {title}\n\n```text\n{result.output.rstrip()}\n```\n")
    return "".join(parts)


def test_cli_reference_is_current() -> None:
    """docs/cli.md shows exactly what --help prints (run scripts/cli-docs to refresh it)."""
    assert (ROOT / "docs" / "cli.md").read_text() == cli_reference()


def _block_after(text: str, marker: str) -> list[str]:
    """The lines of the first fenced block after ``marker`` in ``text``."""
    start = text.index(marker)
    fence = text.index("```", start)
    body = text.index("\n", fence) + 1
    return text[body : text.index("```", body)].rstrip("\n").split("\n")


def test_readme_quickstart_output_is_what_the_commands_print(tmp_path: Path) -> None:
    """The README's sample output of the quickstart is what `db upgrade`, `serve` and `send`
    print on a fresh directory (only the generated token and the port differ)."""
    readme = (ROOT / "README.md").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDRHUB_")}
    cdrhub = [sys.executable, "-m", "cdrhub"]
    upgrade = subprocess.run(
        [*cdrhub, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [*cdrhub, "serve", "--port", str(port)], cwd=tmp_path, env=env, stdout=out,
            stderr=subprocess.DEVNULL, text=True,
        )
    try:
        deadline = time.monotonic() + 30
        while "Listening" not in log.read_text() and time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            time.sleep(0.1)
        token = (tmp_path / "data" / "token").read_text().strip()
        printed = upgrade.stdout + log.read_text()
        printed = printed.replace(token, "Xq3...").replace(f":{port}/", ":8080/")
        assert printed.rstrip("\n").split("\n") == _block_after(readme, "`scripts/serve` prints")
        sends = []
        for _ in range(2):
            sent = subprocess.run(
                [*cdrhub, "send", "--url", f"http://127.0.0.1:{port}/cc/callback"],
                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
            )
            sends += ["$ .venv/bin/cdrhub send", *sent.stdout.rstrip("\n").split("\n")]
        assert sends == _block_after(readme, "push the vendor's example the way NXCC does")
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_every_proof_named_in_the_security_page_exists() -> None:
    """docs/security.md names a test for each defence; each must exist (a `::name` alone is
    in the file named before it on that line)."""
    text = (ROOT / "docs" / "security.md").read_text()
    missing = []
    for line in text.splitlines():
        current: Path | None = None
        for ref in re.findall(r"`((?:tests/[\w/]+\.py)?(?:::\w+)*)`", line):
            path, _, rest = ref.partition("::")
            if path:
                current = ROOT / path
                if not current.exists():
                    missing.append(ref)
                    continue
            if not rest or current is None:
                continue
            source = current.read_text()
            for name in rest.split("::"):
                if not re.search(rf"^\s*(?:def|class) {name}\b", source, re.MULTILINE):
                    missing.append(f"{current.relative_to(ROOT)}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
