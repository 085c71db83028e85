"""Is the database's schema what its Alembic revision says it is?

A database that says "0001" may still not be 0001: builds before 0.1.0 edited that migration
in place, so a database made by one of them lacks what was added later (such as
``mail_users.session_epoch``) while telling Alembic it is up to date. Start-up and
`smshub db upgrade` check first and refuse such a database with what is wrong and what to
do, rather than fail later in the middle of a request with UndefinedColumn.

- At the newest revision this build knows (head), the live schema is compared with the
  models (Alembic's autogenerate comparison, as tests/test_schema.py does).
- At an older revision, with the tables and columns that revision's migrations make (built
  in a scratch in-memory SQLite database: names only, as types differ between dialects).
- At a revision this build does not know (a newer build upgraded the database: a rolling
  upgrade in progress), it runs if every table and column it needs is there, as
  expand/contract migrations guarantee (see hub/migrations/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Column, Engine, Index, Table, UniqueConstraint, inspect, text
from sqlalchemy.schema import AddConstraint, CreateColumn, CreateIndex
from sqlmodel import SQLModel

import hub.store.models  # noqa: F401  (registers the tables)
from hub.errors import SchemaError
from hub.store.db import MIGRATIONS_DIR, make_engine, upgrade

Status = Literal["empty", "current", "behind", "ahead"]


@dataclass
class SchemaState:
    """What the database holds compared with what this build needs."""

    status: Status
    revision: str | None
    head: str
    # What differs from what the revision makes, one sentence each (empty: nothing).
    problems: list[str] = field(default_factory=list)
    # Statements that would add what is missing (for the operator to review, never run).
    fixes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def scripts() -> ScriptDirectory:
    """This build's migrations."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def head_revision() -> str:
    head = scripts().get_current_head()
    assert head is not None, "no migrations found"
    return head


def revisions() -> list[str]:
    """Every revision this build knows, oldest first."""
    return [r.revision for r in reversed(list(scripts().walk_revisions()))]


def where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def stored_revision(engine: Engine) -> str | None:
    """The revision in alembic_version, None for a database without it. Read-only (no
    write lock on SQLite), and an unreachable or locked database is an error, not "empty"."""
    with engine.execution_options(smshub_readonly=True).connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        conn.rollback()
    return row[0] if row else None


def inspect_schema(engine: Engine) -> SchemaState:
    """Compare ENGINE's schema with what its revision makes (see the module's docstring)."""
    revision = stored_revision(engine)
    head = head_revision()
    if revision is None:
        return SchemaState("empty", None, head)
    if revision == head:
        problems, fixes = _compare_with_models(engine)
        return SchemaState("current", revision, head, problems, fixes)
    if revision not in revisions():
        problems, fixes = _compare_with_models(engine, missing_only=True)
        return SchemaState("ahead", revision, head, problems, fixes)
    problems, fixes = _compare_with_revision(engine, revision)
    return SchemaState("behind", revision, head, problems, fixes)


def explain(engine: Engine, state: SchemaState) -> str:
    """The refusal an operator reads for a database whose schema STATE does not match."""
    listed = "; ".join(state.problems[:8])
    if len(state.problems) > 8:
        listed += f"; and {len(state.problems) - 8} more"
    if state.status == "ahead":
        return (
            f"database {where(engine)} is at schema revision {state.revision}, made by a newer "
            f"smshub than this one (which knows up to {state.head}), and it lacks what this "
            f"version needs: {listed}. A newer version has removed it (a contract step): run "
            "the newer version on every instance, or restore the backup taken before that "
            "upgrade"
        )
    return (
        f"database {where(engine)} says it is at schema revision {state.revision}, but its "
        f"tables differ from what revision {state.revision} makes: {listed}. It was probably "
        "made by a pre-release build whose migrations changed afterwards. Nothing was "
        "changed. Back it up (`smshub db backup FILE`, or pg_dump), then run "
        "`smshub db check` for every difference and the statements that add what is missing "
        "(see docs/deploy.md, 'Schema check'), or start from a new database"
    )


def check(engine: Engine) -> SchemaState:
    """INSPECT_SCHEMA, raising SchemaError for a database this build must not touch."""
    state = inspect_schema(engine)
    if not state.ok:
        raise SchemaError(explain(engine, state))
    return state


def ensure_schema(engine: Engine) -> SchemaState:
    """At start: create the schema of an empty database; refuse one that is behind (the
    operator upgrades it with `smshub db upgrade`, once, before starting new instances) or
    whose schema does not match its revision."""
    state = check(engine)
    if state.status == "empty":
        upgrade(engine)
        return inspect_schema(engine)
    if state.status == "behind":
        raise SchemaError(
            f"database {where(engine)} is at schema revision {state.revision} and this "
            f"version needs {state.head}: back it up, then run `smshub db upgrade` (once, "
            "from one machine; instances of the older version keep working meanwhile)"
        )
    return state


def checked_upgrade(engine: Engine) -> tuple[str | None, str]:
    """`smshub db upgrade`: check, migrate to head, check again; returns (before, after)."""
    state = check(engine)
    if state.status == "ahead":
        return state.revision, state.revision or ""
    upgrade(engine)
    after = check(engine)
    return state.revision, after.revision or ""


# -- comparisons ------------------------------------------------------------------------------
def _compare_with_models(
    engine: Engine, *, missing_only: bool = False
) -> tuple[list[str], list[str]]:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    problems: list[str] = []
    fixes: list[str] = []
    for diff in diffs:
        for item in diff if isinstance(diff, list) else [diff]:
            said, fix = _describe(item, engine)
            if said is None or (missing_only and not said.startswith("missing")):
                continue
            problems.append(said)
            if fix:
                fixes.append(fix)
    return problems, fixes


def _describe(item: tuple[Any, ...], engine: Engine) -> tuple[str | None, str | None]:
    """One autogenerate difference in words (None: a difference that does no harm), and
    the statement that adds what is missing when there is one."""
    kind = item[0]
    dialect = engine.dialect
    if kind == "add_table":
        table: Table = item[1]
        return f"missing table {table.name}", None
    if kind == "remove_table":
        # A table of the operator's own, or of a pre-release feature: the hub never reads it.
        return None, None
    if kind == "add_column":
        column: Column[Any] = item[3]
        ddl = f"ALTER TABLE {item[2]} ADD COLUMN {CreateColumn(column).compile(dialect=dialect)}"
        return f"missing column {item[2]}.{column.name}", ddl
    if kind == "remove_column":
        return f"unexpected column {item[2]}.{item[3].name}", None
    if kind == "add_index":
        index: Index = item[1]
        ddl = str(CreateIndex(index).compile(dialect=dialect))
        return f"missing index {index.name} on {index.table.name}", ddl  # type: ignore[union-attr]
    if kind == "remove_index":
        return f"unexpected index {item[1].name} on {item[1].table.name}", None
    if kind == "add_constraint" and isinstance(item[1], UniqueConstraint):
        constraint: UniqueConstraint = item[1]
        cols = ", ".join(c.name for c in constraint.columns)
        ddl = str(AddConstraint(constraint).compile(dialect=dialect))
        return f"missing unique constraint on {constraint.table.name} ({cols})", ddl
    if kind == "remove_constraint":
        return f"unexpected constraint {item[1].name} on {item[1].table.name}", None
    if kind.startswith("modify_"):
        _, _, tname, cname, _, existing, wanted = item
        what = kind.removeprefix("modify_").replace("_", " ")
        return f"column {tname}.{cname}: {what} is {existing}, expected {wanted}", None
    return f"{kind.replace('_', ' ')}: {item[1:]}", None


def reference_tables(revision: str) -> dict[str, set[str]]:
    """Tables and their columns as this build's migrations make them at REVISION."""
    scratch = make_engine("sqlite://")
    try:
        upgrade(scratch, revision)
        found = inspect(scratch)
        return {
            t: {c["name"] for c in found.get_columns(t)}
            for t in found.get_table_names()
            if t != "alembic_version"
        }
    except CommandError as exc:
        raise SchemaError(f"cannot build schema revision {revision}: {exc}") from None
    finally:
        scratch.dispose()


def _compare_with_revision(engine: Engine, revision: str) -> tuple[list[str], list[str]]:
    """(differences, statements adding a missing column) against what REVISION makes; a
    column later migrations did not change is added as the models define it."""
    expected = reference_tables(revision)
    live = inspect(engine)
    tables = set(live.get_table_names())
    models = SQLModel.metadata.tables
    problems: list[str] = []
    fixes: list[str] = []
    for name, columns in sorted(expected.items()):
        if name not in tables:
            problems.append(f"missing table {name}")
            continue
        present = {c["name"] for c in live.get_columns(name)}
        for column in sorted(columns - present):
            problems.append(f"missing column {name}.{column}")
            model = models.get(name)
            if model is not None and column in model.c:
                ddl = CreateColumn(model.c[column]).compile(dialect=engine.dialect)
                fixes.append(f"ALTER TABLE {name} ADD COLUMN {ddl}")
        problems += [f"unexpected column {name}.{c}" for c in sorted(present - columns)]
    return problems, fixes
