"""Schema migrations (Alembic) driven from code: ``cdrhub db upgrade`` and the startup check."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

_SCRIPTS = Path(__file__).with_name("migrations")


def _config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The schema revision this version of cdrhub needs."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None  # the package always ships at least one migration
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; returns (revision before, revision after)."""
    before = current_revision(engine)
    command.upgrade(_config(engine), "head")
    return before, head_revision()
