"""Engines, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Table,
    TextClause,
    TypeDecorator,
    any_,
    bindparam,
    cast,
    delete,
    event,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.sql.sqltypes import NullType
from sqlalchemy.sql.visitors import InternalTraversal
from sqlmodel import Session, SQLModel, create_engine

MIGRATIONS_DIR = Path(__file__).parents[1] / "migrations"

log = logging.getLogger("smshub.db")


T = TypeVar("T")

TIMESTAMP = DateTime(timezone=True)
# Bind names that always carry a timestamp in hand-written SQL.
_TIME_PARAMS = ("now", "due", "cutoff", "at")


def sql(statement: str) -> TextClause:
    """Hand-written SQL whose time parameters are typed like the ORM's columns.

    Untyped datetimes reach SQLite as ISO strings with an offset, while the ORM stores
    them without one; mixing both in a column would break comparisons.
    """
    clause = text(statement)
    names = [n for n in _TIME_PARAMS if f":{n}" in statement]
    if names:
        clause = clause.bindparams(*(bindparam(n, type_=TIMESTAMP) for n in names))
    return clause


def padded(values: Iterable[T]) -> list[T]:
    """VALUES for an expanding IN list, padded (the last one repeated, which an IN ignores)
    to a power-of-two length.

    Each length of an IN list is another SQL text, and every connection keeps the texts it
    ran prepared (sqlite3's statement cache: 128 per connection; a prepared IN of 200 ids
    takes about 35 KB of SQLite's heap). Lists whose length follows the traffic (a group
    commit, a batch of reports) filled those caches ever further, so memory grew with the
    messages sent on SQLite. Padded, a statement has about ten texts, all prepared soon.
    """
    items = list(values)
    if not items:
        return items
    size = 1 << (len(items) - 1).bit_length()
    return items + [items[-1]] * (size - len(items))


class _Member(ColumnElement[bool]):
    """See ``member``: the two renderings of one test, the dialect's chosen at compile."""

    inherit_cache = True
    type = Boolean()
    # A comparison already: no "= 1" added where the dialect has no boolean type.
    _is_implicitly_boolean = True
    _traverse_internals = [
        ("in_list", InternalTraversal.dp_clauseelement),
        ("in_array", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, in_list: ColumnElement[bool], in_array: ColumnElement[bool]) -> None:
        self.in_list = in_list
        self.in_array = in_array


@compiles(_Member)
def _member_default(element: _Member, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.in_list, **kw))


@compiles(_Member, "postgresql")
def _member_postgresql(element: _Member, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.in_array, **kw))


def _array_item(value: int | str) -> str:
    """VALUE as an element of a PostgreSQL array's text form: an int as is, a string
    double-quoted with its backslashes and quotes escaped (any other character stands for
    itself between the quotes)."""
    if type(value) is int:
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"member() lists hold ints and strings, not {type(value).__name__}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _ArrayText(TypeDecorator[list[Any]]):
    """A list of ints or strings bound as its PostgreSQL array text (``{1,2}``,
    ``{"a","b"}``), which the statement casts to the column's array type.

    psycopg adapts a Python list element by element in Python, about 5 us each: ~2.7 ms for
    the 512 keys and again for the 512 numbers a calendar sync's lookups bind per chunk
    (bench/reminders.py). Joined here, the same list costs a tenth of that."""

    # No type of its own on the parameter (psycopg sends a str as "unknown"): cast straight
    # to the array type, PostgreSQL parses the text once per execution. A parameter typed
    # text would be cast per row compared (CoerceViaIO in a generic plan's filter).
    impl = NullType
    cache_ok = True

    def __init__(self, item: Any) -> None:
        super().__init__()
        self.item = item

    def bind_expression(self, bindvalue: Any) -> Any:
        return cast(bindvalue, ARRAY(self.item))

    def process_bind_param(self, value: list[Any] | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return "{" + ",".join(map(_array_item, value)) + "}"


def member(column: Any, name: str) -> ColumnElement[bool]:
    """COLUMN is one of the list bound as NAME (a Python list of ints or strings, ``padded``
    or not).

    SQLite gets an expanding IN (one text per list length: pad the list). PostgreSQL gets
    ``= ANY(array)``, one parameter whatever the list's length: the statement's text never
    changes, so psycopg converts it once and prepares it, and the server parses a few bytes
    instead of an IN of a thousand placeholders. The array goes as its text (``_ArrayText``).
    """
    return _Member(
        column.in_(bindparam(name, expanding=True)),
        column == any_(bindparam(name, type_=_ArrayText(column.type))),
    )


def table(model: type[SQLModel]) -> Table:
    """MODEL's Core table, for hot paths that write rows without building ORM objects."""
    found: Table = model.__table__  # type: ignore[attr-defined]
    return found


def is_sqlite(engine: Engine) -> bool:
    """True for the embedded SQLite backend (one dispatcher, no row locks)."""
    return engine.dialect.name == "sqlite"


def make_engine(
    url: str,
    *,
    busy_timeout: float = 30.0,
    schema: str | None = None,
    application_name: str | None = None,
) -> Engine:
    """An engine tuned for the hub: WAL and immediate transactions on SQLite.

    ``schema`` (PostgreSQL only) puts every table in that schema, which keeps test runs apart.
    ``application_name`` (PostgreSQL only) names this instance in pg_stat_activity, which is
    how any instance tells which one holds the scheduler's leader lock.
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
        engine = create_engine(url, **kwargs)
        _tune_sqlite(engine, busy_timeout)
        return engine
    connect_args: dict[str, Any] = {}
    if schema:
        connect_args["options"] = f"-csearch_path={schema}"
    if application_name:
        connect_args["application_name"] = application_name[:63]
    if connect_args:
        kwargs["connect_args"] = connect_args
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


def _tune_sqlite(engine: Engine, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) instead of pysqlite's deferred guesswork.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL may lose the last commits on power loss, and
        # a 250 already told the sender its mail was safe.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Take the write lock at BEGIN: a deferred transaction that later upgrades to write
        # fails with "database is locked" instead of waiting when two processes write.
        # Read-only work (read_scope) must not queue behind writers for a lock it never needs.
        if conn.get_execution_options().get("smshub_readonly"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Steps waiting for the commit of a session's outermost transaction, each with the savepoint
# (None: the outermost transaction) it was registered in.
_AFTER_COMMIT = "smshub_after_commit"


def after_commit(session: OrmSession, step: Callable[[], None]) -> None:
    """Run STEP once SESSION's outermost transaction has committed; never if it rolls back.

    What follows a commit (balance alerts, metrics) waits for it, whichever door's helper
    commits (``session_scope``, ``WorkerConnection``, a caller's own ``commit``): an effect
    of rows that are not committed yet could outlive them. A step registered in a savepoint
    that rolls back is dropped with it. Steps run in order, outside any transaction of
    SESSION; one that fails is logged and the others still run (the commit stands).
    """
    pending = session.info.setdefault(_AFTER_COMMIT, [])
    pending.append((session.get_nested_transaction(), step))


def bound_engine(session: OrmSession) -> Engine:
    """The engine SESSION works on (also when it is bound to one kept connection)."""
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


@event.listens_for(OrmSession, "after_commit")
def _run_after_commit(session: OrmSession) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: its steps wait for the outermost commit
    for _savepoint, step in session.info.pop(_AFTER_COMMIT, []):
        try:
            step()
        except Exception:
            log.exception("a step after a commit failed (the commit stands)")


@event.listens_for(OrmSession, "after_rollback")
def _drop_after_rollback(session: OrmSession) -> None:
    savepoint = session.get_nested_transaction()
    if savepoint is None:
        session.info.pop(_AFTER_COMMIT, None)
        return
    pending = session.info.get(_AFTER_COMMIT)
    if pending:
        pending[:] = [(sp, step) for sp, step in pending if sp is not savepoint]


def _read_options(engine: Engine) -> dict[str, Any]:
    """The execution options of ``read_scope`` on ENGINE."""
    options: dict[str, Any] = {"smshub_readonly": True}
    # PostgreSQL at READ COMMITTED (its default) gives each statement its own snapshot, in a
    # transaction or not: reads in autocommit see exactly what they would in one, without
    # the BEGIN and ROLLBACK round trips (two per scope; a calendar sync opens four). Any
    # other level keeps its transaction (a snapshot shared by the statements). SQLite's
    # BEGIN is what keeps one snapshot across a scope's reads: kept.
    if (
        engine.dialect.name == "postgresql"
        and getattr(engine.dialect, "default_isolation_level", None) == "READ COMMITTED"
    ):
        options["isolation_level"] = "AUTOCOMMIT"
    return options


@contextmanager
def read_scope(engine: Engine) -> Iterator[Session]:
    """A session for reads only (on SQLite it does not take the write lock; on PostgreSQL
    at READ COMMITTED it runs in autocommit, so nothing it might write is rolled back)."""
    with Session(engine.execution_options(**_read_options(engine)), expire_on_commit=False) as s:
        try:
            yield s
        finally:
            # Detach first: objects read here stay usable after the scope (the rollback
            # would otherwise expire them).
            s.expunge_all()
            s.rollback()


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A Core connection for reads only, as ``read_scope`` reads (no write lock on SQLite,
    autocommit on PostgreSQL at READ COMMITTED), without an ORM session: for prebuilt
    statements on hot paths (a calendar sync's checks), where building and tearing down a
    session costs more than the statement."""
    # Closing the connection rolls back what it began (SQLite's read transaction).
    with engine.connect() as conn:
        yield conn.execution_options(**_read_options(engine))


def delete_older(
    engine: Engine, stamp: Column[Any], cutoff: datetime, *, batch: int, most: int | None = None
) -> int:
    """Delete the rows of STAMP's table whose STAMP is before CUTOFF, BATCH rows per
    transaction (the oldest first, by id, so each batch reads little), until a batch finds
    fewer than BATCH or MOST (None: no bound) are gone; returns how many were deleted."""
    rows = stamp.table
    oldest = (
        select(rows.c.id).where(stamp < cutoff).order_by(rows.c.id).limit(batch).scalar_subquery()
    )
    deleted = 0
    while most is None or deleted < most:
        with session_scope(engine) as session:
            gone = int(session.execute(delete(rows).where(rows.c.id.in_(oldest))).rowcount)  # type: ignore[attr-defined]
        deleted += gone
        if gone < batch:
            break
    return deleted


class WorkerConnection:
    """One connection kept for a worker's transactions, one after the other (the group
    commit of mail intake): no pool checkout, ping and reset per transaction. After an error
    it is given back (the pool checks it before its next use); ``close`` when idle."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connection: Connection | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """As ``session_scope``, on the kept connection."""
        if self.connection is None or self.connection.invalidated:
            self.close()
            self.connection = self.engine.connect()
        with Session(bind=self.connection, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                try:
                    session.rollback()
                finally:
                    self.close()
                raise

    def close(self) -> None:
        if self.connection is not None:
            connection, self.connection = self.connection, None
            connection.close()


def database_warnings(engine: Engine) -> list[str]:
    """What in the database server's settings will hurt the hub, told to its operator."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar()
    if autovacuum == "on":
        return []
    # Plans made from statistics taken when a table was small stay in use as it grows: a
    # lookup by a unique key can end up reading every earlier row.
    return [
        "PostgreSQL's autovacuum is off, so its table statistics go stale as the hub's "
        "tables grow and lookups (such as the duplicate check of each incoming mail) slow "
        "down with them; set autovacuum = on in postgresql.conf, or run ANALYZE regularly"
    ]


def alembic_config(engine: Engine) -> Any:
    """An Alembic Config bound to ENGINE (used by `smshub db upgrade` and the tests)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to REVISION."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema's Alembic revision, or None for an empty database."""
    with engine.connect() as conn:
        try:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return None
    return row[0] if row else None
