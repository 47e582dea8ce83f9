"""The docs describe the program that exists: every setting, command and script they name."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from cdrhub.cli import main
from cdrhub.settings import Settings

ROOT = Path(__file__).parent.parent


def test_every_setting_is_documented() -> None:
    """docs/settings.md has a row for each CDRHUB_ variable, and no stale ones."""
    text = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `CDRHUB_([A-Z_]+)`", text, re.MULTILINE))
    assert documented == {name.upper() for name in Settings.model_fields}


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
