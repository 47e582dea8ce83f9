"""The command line, run in-process (Click's runner) against a test database."""

from __future__ import annotations

from click.testing import CliRunner, Result

from cdrhub.cli import main
from cdrhub.settings import Settings


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def db_env(settings: Settings) -> dict[str, str]:
    return {
        "CDRHUB_DATABASE_URL": settings.database_url,
        "CDRHUB_DATA_DIR": str(settings.data_dir),
        "CDRHUB_TOKENS": "",
    }
