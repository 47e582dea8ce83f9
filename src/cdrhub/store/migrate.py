"""Schema migrations (Alembic) driven from code: ``cdrhub db upgrade`` and the startup check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

if TYPE_CHECKING:
    from alembic.config import Config

_SCRIPTS = Path(__file__).with_name("migrations")


#: The newest migration's revision: what ``serve`` checks the database against without
#: loading Alembic (40 MB of every server). tests/store checks it is Alembic's own head.
HEAD = "0010"


def _config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The schema revision this version of cdrhub needs."""
    return HEAD


def alembic_head() -> str | None:
    """The head of the migration scripts as Alembic reads them (HEAD must equal it)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database.

    Alembic keeps it in one row of ``alembic_version``; read directly so that a server that
    only checks its schema never loads Alembic.
    """
    with engine.connect() as conn:
        try:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
        except (OperationalError, ProgrammingError):
            return None  # no such table: nothing was ever migrated here
    if len(rows) > 1:
        raise RuntimeError("alembic_version has several rows: the schema has branches")
    return rows[0][0] if rows else None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every pending migration; returns (revision before, revision after)."""
    before = current_revision(engine)
    if before == HEAD:
        # Nothing to apply: Alembic (about 10 MB of a process, with Mako and Pygments) stays
        # unloaded, so `serve` with CDRHUB_AUTO_MIGRATE on a current database costs no more
        # memory than its schema check does.
        return before, HEAD
    from alembic import command

    command.upgrade(_config(engine), "head")
    return before, head_revision()
