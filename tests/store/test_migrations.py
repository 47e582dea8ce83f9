"""The Alembic migrations build exactly the schema that ``store/schema.py`` describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cdrhub.store import open_store
from cdrhub.store.migrate import head_revision
from cdrhub.store.schema import metadata


def test_migrations_match_the_metadata(store_url: str) -> None:
    """After `db upgrade`, autogenerate finds nothing to change: code and migrations agree."""
    store = open_store(store_url)
    try:
        store.upgrade()
        with store.write_engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        store.close()


def test_upgrade_is_idempotent(store_url: str) -> None:
    """Running the upgrade twice (several receivers starting at once) changes nothing."""
    store = open_store(store_url)
    try:
        head = head_revision()
        assert store.upgrade() == (None, head)
        assert store.upgrade() == (head, head)
        assert store.schema_status() == (head, head)
    finally:
        store.close()


def test_the_head_serve_checks_against_is_alembics_head(store_url: str) -> None:
    """`serve` checks the schema without loading Alembic: its HEAD must be the newest
    migration, and its reading of the database's revision must be Alembic's own."""
    from cdrhub.store import migrate

    assert migrate.HEAD == migrate.alembic_head()
    store = open_store(store_url)
    try:
        assert migrate.current_revision(store.read_engine) is None  # empty: no table yet
        store.upgrade()
        with store.read_engine.connect() as conn:
            alembic_reading = MigrationContext.configure(conn).get_current_revision()
        assert migrate.current_revision(store.read_engine) == alembic_reading == migrate.HEAD
    finally:
        store.close()
