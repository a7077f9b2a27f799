"""Alembic environment for the metadata store: the engine comes from `query.store.Store`, not an ini file."""

from __future__ import annotations

from alembic import context

from query.store.tables import Base

config = context.config
engine = config.attributes["engine"]

with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
