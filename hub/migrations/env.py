"""Alembic environment: runs against the engine the hub hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import hub.store.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from hub.core.config import load_config
        from hub.store.db import make_engine

        engine = make_engine(load_config().database_url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations_online()
