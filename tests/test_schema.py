"""The migrations build exactly the models' schema, without indexes that only cost writes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, PrimaryKeyConstraint, UniqueConstraint, inspect
from sqlmodel import SQLModel

import hub.store.models  # noqa: F401 (the tables)
from hub.store.db import database_warnings


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert differences == []


def _condition(where: object) -> str:
    """A partial index's WHERE as text, without the parentheses and case PostgreSQL adds."""
    return (
        ""
        if where is None
        else " ".join(str(where).lower().replace("(", " ").replace(")", " ").split())
    )


def test_partial_indexes_match_the_models(engine: Engine) -> None:
    # Alembic's comparison above ignores an index's WHERE: a migration that left an index
    # whole (every insert paying for it) or partial where the model is not would pass it.
    dialect = engine.dialect.name
    found = {}
    with engine.connect() as conn:
        inspector = inspect(conn)
        for table in SQLModel.metadata.sorted_tables:
            for index in inspector.get_indexes(table.name):
                options = index.get("dialect_options", {})
                found[index["name"]] = _condition(options.get(f"{dialect}_where"))
    wanted = {
        str(index.name): _condition(index.dialect_options[dialect].get("where"))
        for table in SQLModel.metadata.sorted_tables
        for index in table.indexes
    }
    assert {name: found.get(name) for name in wanted} == wanted
    assert wanted["ix_messages_provider_ref"] == "provider_message_id is not null"


def test_no_index_is_the_start_of_another() -> None:
    # A plain index on the first columns of another index (or unique constraint) is never
    # needed for reading, yet every insert pays for it.
    redundant = []
    for table in SQLModel.metadata.sorted_tables:
        keys = [([c.name for c in i.columns], i.unique, i.name) for i in table.indexes]
        keys += [
            ([c.name for c in k.columns], True, k.name or table.name)
            for k in table.constraints
            if isinstance(k, UniqueConstraint | PrimaryKeyConstraint)
        ]
        for columns, unique, name in keys:
            for other, _, other_name in keys:
                if not unique and len(columns) < len(other) and other[: len(columns)] == columns:
                    redundant.append(f"{table.name}.{name} (covered by {other_name})")
    assert redundant == []


def test_stale_statistics_are_warned_about(engine: Engine) -> None:
    warnings = database_warnings(engine)
    if engine.dialect.name != "postgresql":
        assert warnings == []
        return
    with engine.connect() as conn:
        autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar()
    assert bool(warnings) == (autovacuum != "on")
    assert all("autovacuum" in w and "ANALYZE" in w for w in warnings)
