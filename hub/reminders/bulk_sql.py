"""Many rows of one table written straight through the database driver.

SQLAlchemy's executemany works each row's parameters in Python: a dict per row, the
compiled statement's parameter construction, a bind processor per value (on SQLite a
datetime is formatted through a dict of its seven fields). For the planner's 60,000 rows of
a first sync that was half of the writing. Here a statement's text is built once per table
and column set, each column's values are converted in one pass with the conversion
SQLAlchemy applies (its own bind processor, or on SQLite an equal and faster datetime
formatter, checked equal before use), columns left out get the Python-side scalar default
SQLAlchemy would add, and the rows reach the driver as tuples. On PostgreSQL rows are
inserted with COPY: one statement for the lot, where an executemany makes the server parse,
plan and check each row as its own INSERT; in COPY's binary form when every value's binary
form stores what its text form stores (``_binary_fits``), which costs psycopg a third of the
text form's formatting and the server no parsing.

The values stored are those SQLAlchemy's ``insert(table)`` stores
(tests/test_reminder_bulk_sql.py compares them column by column, as stored, on both
databases).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

from sqlalchemy import Connection, DateTime, Table

# PostgreSQL types a COPY sends in binary form, with the Python types of the values whose
# binary form stores what the text form stores (None = NULL in either). Binary rows cost
# psycopg about a third of the formatting of text rows, and the server no parsing.
# timestamptz takes aware datetimes only: the text form of a naive one is read in the
# session's zone, which the binary form cannot say.
_NONE = type(None)
_BINARY: dict[int, tuple[type, ...]] = {
    16: (bool, _NONE),  # boolean
    20: (int, _NONE),  # bigint
    21: (int, _NONE),  # smallint
    23: (int, _NONE),  # integer
    25: (str, _NONE),  # text
    1043: (str, _NONE),  # character varying
    1184: (datetime, _NONE),  # timestamp with time zone
}
_TIMESTAMPTZ = 1184
_TZINFO = attrgetter("tzinfo")

_Processor = Callable[[Any], Any]
# Statements and converters per (dialect, table, given columns): built once.
_SHAPES: dict[tuple[str, str, tuple[str, ...], str], _Shape] = {}


@dataclass(frozen=True)
class _Shape:
    sql: str
    given: tuple[str, ...]
    # (column, value) of the columns not given that SQLAlchemy fills from a scalar default.
    defaults: tuple[tuple[str, Any], ...]
    # One converter per column of the statement (given, then defaulted): None = as is.
    processors: tuple[_Processor | None, ...]
    # Per given column: a datetime, whose values the rows of a call often share (a chunk's
    # created_at and updated_at are one ``now``, its send times a few slots).
    shared: tuple[bool, ...] = ()
    # COPY only: each column's PostgreSQL type oid when all have a binary form this module
    # sends (``_BINARY``), and the statement that takes them; else None (text COPY).
    types: tuple[int, ...] | None = None
    binary_sql: str = ""


def _placeholder(conn: Connection) -> str | None:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return "?"
    if style in ("format", "pyformat"):
        return "%s"
    return None


def _processor(conn: Connection, table: Table, name: str) -> _Processor | None:
    dialect = conn.dialect
    column_type = table.c[name].type
    found = column_type.dialect_impl(dialect).bind_processor(dialect)
    if found is None or dialect.name != "sqlite":
        return found
    return _fast_sqlite_datetime(found)


def _fast_sqlite_datetime(processor: _Processor) -> _Processor:
    """PROCESSOR, or for SQLite's DATETIME an equal one ~5x faster on datetimes.

    SQLAlchemy stores a datetime as its fields 'YYYY-MM-DD HH:MM:SS.ffffff' (an offset, if
    any, left out): ``isoformat`` with microseconds gives the same 26 characters first. Used
    only when it gives what PROCESSOR gives (a custom storage format does not)."""
    sample = datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=UTC)
    try:
        if processor(sample) != sample.isoformat(" ", "microseconds")[:26]:
            return processor
        if processor(sample.replace(microsecond=0, tzinfo=None)) != "2026-01-02 03:04:05.000000":
            return processor
    except (TypeError, ValueError):
        return processor  # not a datetime column

    def process(value: Any) -> Any:
        if type(value) is datetime:
            return value.isoformat(" ", "microseconds")[:26]
        return processor(value)

    return process


def _shape(conn: Connection, table: Table, given: tuple[str, ...], verb: str) -> _Shape | None:
    """The statement for VERB ('insert', 'copy', or 'update': GIVEN's last column is the key
    the others are set by) of GIVEN columns; None when this dialect's driver is not one this
    module knows (the caller then goes through SQLAlchemy)."""
    dialect = conn.dialect
    cache_key = (f"{dialect.name}+{dialect.driver}", table.fullname, given, verb)
    shape = _SHAPES.get(cache_key)
    if shape is not None:
        return shape
    mark = _placeholder(conn)
    if mark is None:
        return None
    defaults = []
    # An UPDATE sets only what it is given; an INSERT also the scalar defaults left out.
    for column in table.columns if verb != "update" else ():
        if column.key in given or column.default is None:
            continue
        if not column.default.is_scalar:
            return None  # a default computed per row: SQLAlchemy's path computes it
        value = column.default.arg  # type: ignore[attr-defined]
        if value is not None:
            defaults.append((column.key, value))
    names = [*given, *(name for name, _ in defaults)]
    quote = dialect.identifier_preparer.quote
    target = dialect.identifier_preparer.format_table(table)
    columns = [quote(table.c[name].name) for name in names]
    types = None
    if verb == "copy":
        sql = f"COPY {target} ({', '.join(columns)}) FROM STDIN"
        types = _copy_types(conn, target, [table.c[name].name for name in names])
    elif verb == "update":
        sets = ", ".join(f"{column} = {mark}" for column in columns[:-1])
        sql = f"UPDATE {target} SET {sets} WHERE {columns[-1]} = {mark}"
    else:
        marks = ", ".join([mark] * len(names))
        sql = f"INSERT INTO {target} ({', '.join(columns)}) VALUES ({marks})"
    shape = _Shape(
        sql,
        given,
        tuple(defaults),
        tuple(_processor(conn, table, name) for name in names),
        tuple(isinstance(table.c[name].type, DateTime) for name in given),
        types,
        f"{sql} (FORMAT BINARY)" if types is not None else "",
    )
    _SHAPES[cache_key] = shape
    return shape


def _copy_types(conn: Connection, target: str, names: list[str]) -> tuple[int, ...] | None:
    """The type oids of TARGET's columns NAMES, as the database has them (not as the model
    says: what a binary COPY must match); None when one has no binary form sent here."""
    found: dict[str, int] = dict(
        conn.exec_driver_sql(
            "SELECT attname, atttypid::int FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (target,),
        ).all()
    )
    types = tuple(found.get(name, 0) for name in names)
    return types if all(oid in _BINARY for oid in types) else None


def _binary_fits(types: Sequence[int], columns: Sequence[Sequence[Any]]) -> bool:
    """True when every value of COLUMNS is of a Python type whose binary form, for its
    column's type, stores what its text form stores (``_BINARY``): else the text COPY."""
    for oid, values in zip(types, columns, strict=True):
        kinds = set(map(type, values))
        if not kinds.issubset(_BINARY[oid]):
            return False
        # None is not a datetime's tzinfo: a naive datetime is among the values.
        if oid == _TIMESTAMPTZ and datetime in kinds and None in map(_TZINFO, filter(None, values)):
            return False
    return True


def _tuples(
    shape: _Shape, rows: Sequence[dict[str, Any]], extra: dict[str, Sequence[Any]] | None = None
) -> list[tuple[Any, ...]]:
    """ROWS (and the EXTRA columns' values, one per row) as the driver's parameter tuples,
    converted a column at a time."""
    return list(zip(*_columns(shape, rows, extra), strict=True))


def _columns(
    shape: _Shape, rows: Sequence[dict[str, Any]], extra: dict[str, Sequence[Any]] | None = None
) -> list[Sequence[Any]]:
    """The values of each of SHAPE's columns for ROWS (and EXTRA), converted."""
    columns: list[Sequence[Any]] = []
    for name, processor, shared in zip(shape.given, shape.processors, shape.shared, strict=False):
        values = extra[name] if extra and name in extra else list(map(itemgetter(name), rows))
        if processor is None:
            columns.append(values)
        elif shared:
            columns.append(_convert_shared(processor, values))
        else:
            columns.append(list(map(processor, values)))
    for (_, value), processor in zip(
        shape.defaults, shape.processors[len(shape.given) :], strict=True
    ):
        columns.append([value if processor is None else processor(value)] * len(rows))
    return columns


def _convert_shared(processor: _Processor, values: Sequence[Any]) -> list[Any]:
    """PROCESSOR applied to VALUES, once per distinct object among them.

    Keyed by identity, not equality: two equal datetimes in different zones are stored
    differently (SQLite keeps the local fields). VALUES holds each object for the whole call,
    so an id is never reused. A column of mostly distinct objects (start times, told by its
    first values) skips the memo, which would only add its lookups."""
    head = values[:64]
    if len(set(map(id, head))) * 2 > len(head):
        return list(map(processor, values))
    objects = dict(zip(map(id, values), values, strict=True))
    done = {key: processor(value) for key, value in objects.items()}
    return list(map(done.__getitem__, map(id, values)))


def insert_many(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    extra: dict[str, Sequence[Any]] | None = None,
) -> bool:
    """Insert ROWS (dicts with the same keys), and EXTRA columns (a value per row: no copy
    of each dict to add one), into TABLE in CONN's transaction; False when this database's
    driver is not handled here (nothing was written: use SQLAlchemy)."""
    if not rows:
        return True
    given = (*(extra or ()), *rows[0])
    if conn.dialect.driver == "psycopg":  # psycopg 3's COPY API (psycopg2 has another)
        shape = _shape(conn, table, given, "copy")
        if shape is None:
            return False
        columns = _columns(shape, rows, extra)
        tuples = list(zip(*columns, strict=True))
        if shape.types is not None and _binary_fits(shape.types, columns):
            _copy(conn, tuples, shape.binary_sql, shape.types)
        else:
            _copy(conn, tuples, shape.sql)
        return True
    shape = _shape(conn, table, given, "insert")
    if shape is None:
        return False
    conn.exec_driver_sql(shape.sql, _tuples(shape, rows, extra))
    return True


def _copy(
    conn: Connection, rows: list[tuple[Any, ...]], sql: str, types: Sequence[int] | None = None
) -> None:
    """COPY ROWS in (psycopg 3), on CONN's own driver connection: in its transaction; in
    binary form when the columns' TYPES are given."""
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(sql) as copy:
        if types is not None:
            copy.set_types(types)
        for values in rows:
            copy.write_row(values)


def next_ids(conn: Connection, table: Table, count: int) -> list[int]:
    """COUNT new ids for TABLE's integer primary key ``id``, to insert rows with.

    PostgreSQL: taken from the column's sequence in one statement. SQLite: the ids it would
    give the rows itself (one more than the largest), safe in a write transaction (a
    session's on SQLite starts with BEGIN IMMEDIATE; another writer's id in between would
    make the insert fail, never share an id)."""
    if count <= 0:
        return []
    name = table.fullname
    if conn.dialect.name == "postgresql":
        result = conn.exec_driver_sql(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            (name, count),
        )
        return sorted(int(row[0]) for row in result)
    target = conn.dialect.identifier_preparer.format_table(table)
    top = conn.exec_driver_sql(f"SELECT max(id) FROM {target}").scalar()
    first = int(top or 0) + 1
    return list(range(first, first + count))


def update_many(
    conn: Connection, table: Table, key: str, rows: Sequence[tuple[Any, dict[str, Any]]]
) -> bool:
    """``UPDATE TABLE SET <the dicts' columns> WHERE KEY = <the value>`` for each (value,
    dict) of ROWS (dicts with the same keys); False when not handled here."""
    if not rows:
        return True
    shape = _shape(conn, table, (*rows[0][1], key), "update")
    if shape is None:
        return False
    flat = [{**values, key: value} for value, values in rows]
    conn.exec_driver_sql(shape.sql, _tuples(shape, flat))
    return True
