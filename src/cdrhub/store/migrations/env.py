"""Alembic environment: migrations run on the engine cdrhub hands over (see store/migrate.py)."""

from alembic import context

from cdrhub.store.schema import metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    # render_as_batch lets later ALTERs work on SQLite by copying the table.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
