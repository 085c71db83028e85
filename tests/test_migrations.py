"""Upgrading a 0.1.0 database with data, and refusing a database whose schema lies.

Generic over the migrations: the data is written at the 0.1.0 baseline (revision 0001) and
the database is then upgraded one revision at a time to head, every row checked after each
step, so each later migration is covered as soon as it exists. A migration that changes
existing data on purpose (a contract step) says how in ``TRANSFORMED``.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel
from typer.testing import CliRunner

import hub.store.models  # noqa: F401  (the tables)
import hub.store.schema_check as schema_check
from hub.cli import main as hub_cli
from hub.cli.main import app
from hub.errors import SchemaError
from hub.sending.credits import ledger_problems
from hub.store import db as hub_db
from hub.store.db import current_revision, make_engine, upgrade
from hub.store.schema_check import ensure_schema, inspect_schema, revisions
from tests.conftest import BACKENDS, PG_URL, require_server

BASELINE = "0001"  # release 0.1.0: never edited
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
# Table -> function(row before, row after) for data a later migration changes on purpose.
TRANSFORMED: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {}


# -- a blank database on each backend -----------------------------------------------------------
@pytest.fixture(params=BACKENDS)
def blank(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database (no schema at all), SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    import psycopg

    base = make_url(PG_URL)
    name = f"smshub_mig_{uuid.uuid4().hex[:10]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        require_server("PostgreSQL", str(exc))
    engine = make_engine(
        base.set(drivername="postgresql+psycopg", database=name).render_as_string(False)
    )
    yield engine
    engine.dispose()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- data written with SQL at 0.1.0 ---------------------------------------------------------------
def _filler(table: Table, column: Any, n: int) -> Any:
    """A value of COLUMN's type for row N (distinct per row, for unique constraints)."""
    kind = column.type
    if isinstance(kind, Boolean):
        return n % 2 == 0
    if isinstance(kind, Integer):
        return n
    if isinstance(kind, Float):
        return 1.5 * n
    if isinstance(kind, DateTime):
        return T0.replace(minute=n % 60)
    if isinstance(kind, LargeBinary):
        return b"\x00raw\xff" + bytes([n % 256])
    if isinstance(kind, String):
        value = f"{column.name}-{n}"
        return value[: kind.length] if kind.length else value
    raise AssertionError(f"no filler for {table.name}.{column.name} ({kind!r})")


def insert(conn: Any, table: Table, n: int, **values: Any) -> dict[str, Any]:
    """INSERT one row into TABLE (as 0.1.0 made it): VALUES as given, the other required
    columns filled in by type, foreign keys pointing at the first row of their parent."""
    row: dict[str, Any] = {}
    for column in table.columns:
        if column.name in values:
            row[column.name] = values[column.name]
        elif column.primary_key and isinstance(column.type, Integer):
            continue
        elif column.foreign_keys:
            target = next(iter(column.foreign_keys)).column
            parent = conn.execute(
                text(f"SELECT {target.name} FROM {target.table.name} ORDER BY 1 LIMIT 1")
            ).scalar()
            if parent is None and column.nullable:
                continue
            row[column.name] = parent
        elif not column.nullable and column.server_default is None:
            row[column.name] = _filler(table, column, n)
    names = list(row)
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(names)}) "
        f"VALUES ({', '.join(':' + n for n in names)})"
    ).bindparams(
        *(
            bindparam(k, type_=table.columns[k].type)
            for k in names
            if isinstance(table.columns[k].type, DateTime | LargeBinary)
        )
    )
    conn.execute(statement, row)
    return row


def write_baseline_data(engine: Engine) -> None:
    """What a 0.1.0 hub holds: accounts and a sub-account, credits and their ledger, sent and
    queued messages, users, tokens, an intake address, a calendar with an event and its
    reminder, a blacklist, outgoing mail; then one row or two in every other table."""
    tables = MetaData()
    tables.reflect(engine)
    t = tables.tables
    with engine.begin() as conn:
        insert(conn, t["accounts"], 1, id=1, name="acme", credit_mode="limited", balance=97,
               disabled=False, default_region="FR", route="", reply_mailbox="ops@acme.test",
               autoreply_enabled=False, autoreply_text="", autoreply_period_hours=24.0,
               alert_email="", alert_sms="", alert_armed=True, created_at=T0)  # fmt: skip
        insert(conn, t["accounts"], 2, id=2, name="acme-shop", parent_id=1,
               credit_mode="shared", balance=0, disabled=False, route="simulator",
               reply_mailbox="", autoreply_enabled=True, autoreply_text="Merci",
               autoreply_period_hours=12.0, alert_email="", alert_sms="", alert_armed=False,
               created_at=T0)  # fmt: skip
        insert(conn, t["ledger"], 1, account_id=1, kind="topup", amount=100, balance_after=100,
               note="welcome", created_at=T0)  # fmt: skip
        for n, status in enumerate(["delivered", "queued", "unknown"], start=1):
            insert(conn, t["messages"], n, id=f"m{n:031d}", account_id=1 + (n == 3),
                   charged_account_id=1, batch_id="b1", idempotency_key=f"api:k{n}",
                   recipient=f"+3361234567{n}", text=f"Rendez-vous n°{n} ✓", encoding="UCS-2",
                   segments=1, credits=1, type="alert", source="api", status=status, detail="",
                   scheduled=False, created_at=T0, due_at=T0, attempts=n - 1, send_seq=0,
                   sent_at=T0 if status != "queued" else None, updated_at=T0)  # fmt: skip
            insert(conn, t["ledger"], n + 1, account_id=1, kind="charge", amount=-1,
                   balance_after=100 - n, message_id=f"m{n:031d}", batch_id="b1", note="sms",
                   created_at=T0)  # fmt: skip
        insert(conn, t["mail_users"], 1, account_id=1, username="reception@acme.test",
               password_hash="$argon2id$v=19$hash", disabled=False, created_at=T0)  # fmt: skip
        insert(conn, t["blacklist"], 1, account_id=1, number="+33699999999", source="stop",
               note="STOP", created_at=T0)  # fmt: skip
        insert(conn, t["calendars"], 1, account_id=1, name="cabinet", source_type="ics",
               settings='{"url": "https://cal.acme.test/a.ics"}', enabled=True,
               sync_interval_minutes=5.0, last_error="", offsets="-1d@09:00",
               template="Rappel: RDV {start}", locale="fr", timezone="Europe/Paris",
               quiet_start="20:00", quiet_end="08:00", min_lead_minutes=60.0,
               notify_changes=True, notify_mailbox="", window_days=30,
               created_at=T0)  # fmt: skip
        outgoing = insert(conn, t["outgoing_mails"], 1, kind="confirmation",
                          dedupe_key="confirm:1", recipient="boss@acme.test", subject="SMS sent",
                          raw=b"Subject: SMS sent\r\n\r\n\xe2\x9c\x93", status="pending",
                          attempts=0, last_error="", due_at=T0, created_at=T0)  # fmt: skip
        assert outgoing["raw"].endswith(b"\x9c\x93")
        for table in tables.sorted_tables:
            if table.name == "alembic_version":
                continue
            if conn.execute(text(f"SELECT COUNT(*) FROM {table.name}")).scalar() == 0:
                for n in (1, 2):
                    insert(conn, table, n)


def snapshot(engine: Engine) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every row of every table, by primary key."""
    tables = MetaData()
    tables.reflect(engine)
    found: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in tables.sorted_tables:
            if table.name == "alembic_version":
                continue
            key = [c.name for c in table.primary_key.columns]
            rows = conn.execute(select(table)).mappings().all()
            found[table.name] = {tuple(r[k] for k in key): dict(r) for r in rows}
    return found


def assert_preserved(before: dict[str, Any], after: dict[str, Any], step: str) -> None:
    for name, rows in before.items():
        assert name in after, f"{step}: table {name} is gone with its {len(rows)} row(s)"
        assert set(after[name]) == set(rows), f"{step}: rows of {name} changed"
        for key, old in rows.items():
            new = after[name][key]
            if name in TRANSFORMED:
                TRANSFORMED[name](old, new)
                continue
            kept = {c: new.get(c) for c in old}
            assert kept == old, f"{step}: {name} row {key} changed"


def test_a_0_1_0_database_with_data_upgrades_to_head_keeping_every_row(blank: Engine) -> None:
    upgrade(blank, BASELINE)
    write_baseline_data(blank)
    before = snapshot(blank)
    assert all(before.values()), "every table of 0.1.0 holds rows"
    steps = revisions()
    assert steps[0] == BASELINE
    for revision in steps[1:]:
        upgrade(blank, revision)
        after = snapshot(blank)
        assert_preserved(before, after, f"upgrade to {revision}")
        assert inspect_schema(blank).ok, f"at {revision} the schema is what {revision} makes"
    upgrade(blank, "head")
    assert_preserved(before, snapshot(blank), "upgrade to head")
    with blank.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    # The new code reads every upgraded row through its models, and the ledger still adds up.
    with Session(blank) as session:
        for model in SQLModel.metadata.sorted_tables:
            if model.name in before:  # tables added after 0.1.0 start empty
                assert session.execute(select(model)).all(), model.name
        assert ledger_problems(session) == []
    assert inspect_schema(blank).status == "current"


# -- a database whose schema is not what its revision says ---------------------------------------
def _prerelease_database(engine: Engine) -> None:
    """A database of a pre-release build: it says 0001, but 0001 gained session_epoch after."""
    upgrade(engine, BASELINE)
    write_baseline_data(engine)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE mail_users DROP COLUMN session_epoch"))


def _config_file(tmp_path: Path, engine: Engine) -> Path:
    url = engine.url.render_as_string(hide_password=False)
    path = tmp_path / "smshub.toml"
    path.write_text(
        f'[hub]\ndata_dir = "{tmp_path / "var"}"\n[database]\nurl = "{url}"\n'
        "[ops]\nport = 0\n[smtp]\nenabled = false\n"
    )
    return path


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """`smshub run` sets up logging for the process: put the test runner's back after."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def cli(runner: CliRunner, config: Path, *args: str) -> Any:
    hub_cli._state.clear()
    return runner.invoke(app, ["--config", str(config), *args])


def test_a_prerelease_database_is_refused_by_upgrade_and_start_saying_what_to_do(
    blank: Engine, tmp_path: Path, keep_logging: None
) -> None:
    _prerelease_database(blank)
    config = _config_file(tmp_path, blank)
    runner = CliRunner()
    for command in (["db", "upgrade"], ["run", "--role", "dispatcher"]):
        result = cli(runner, config, *command)
        assert result.exit_code == SchemaError.exit_code, result.output
        assert "missing column mail_users.session_epoch" in result.output
        assert "smshub db check" in result.output and "back it up" in result.output.lower()
    assert current_revision(blank) == BASELINE, "nothing was changed"

    # `db check` lists the difference and the statement that repairs it; once run, the
    # database is what 0001 makes and upgrades like any other.
    checked = cli(runner, config, "db", "check")
    assert checked.exit_code == 1
    assert "missing column mail_users.session_epoch" in checked.output
    fix = next(
        line.strip().rstrip(";") for line in checked.output.splitlines() if "ALTER TABLE" in line
    )
    with blank.begin() as conn:
        conn.execute(text(fix))
    assert cli(runner, config, "db", "check").exit_code == 0
    upgraded = cli(runner, config, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert inspect_schema(blank).ok


def test_a_database_upgraded_by_a_newer_version_runs_while_it_has_what_this_one_needs(
    blank: Engine,
) -> None:
    upgrade(blank)
    with blank.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
        # What a newer version's expand step adds: a nullable column, a table.
        conn.execute(text("ALTER TABLE accounts ADD COLUMN future_flag INTEGER"))
        conn.execute(text("CREATE TABLE future_things (id INTEGER PRIMARY KEY)"))
    assert ensure_schema(blank).status == "ahead"
    with blank.begin() as conn:
        conn.execute(text("ALTER TABLE mail_users DROP COLUMN session_epoch"))
    with pytest.raises(SchemaError, match="newer smshub.*mail_users.session_epoch"):
        ensure_schema(blank)


def test_a_database_behind_this_version_is_refused_at_start_and_checked_by_names(
    blank: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a migration newer than the database (a copy of the migrations plus one), start-up
    asks for `smshub db upgrade`, and the older revision's schema is checked too."""
    migrations = tmp_path / "migrations"
    shutil.copytree(hub_db.MIGRATIONS_DIR, migrations)
    current_head = schema_check.head_revision()
    (migrations / "versions" / "9000_next.py").write_text(
        f'revision = "9000"\ndown_revision = "{current_head}"\nbranch_labels = None\n'
        "depends_on = None\n"
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        "def upgrade() -> None:\n"
        "    with op.batch_alter_table('accounts') as batch:\n"
        "        batch.add_column(sa.Column('next_flag', sa.Integer(), nullable=True))\n"
    )
    upgrade(blank, BASELINE)
    monkeypatch.setattr(hub_db, "MIGRATIONS_DIR", migrations)
    monkeypatch.setattr(schema_check, "MIGRATIONS_DIR", migrations)
    assert schema_check.head_revision() == "9000"
    with pytest.raises(SchemaError, match="needs 9000.*smshub db upgrade"):
        ensure_schema(blank)
    with blank.begin() as conn:
        conn.execute(text("ALTER TABLE mail_users DROP COLUMN session_epoch"))
    state = inspect_schema(blank)
    assert state.status == "behind" and state.problems == [
        "missing column mail_users.session_epoch"
    ]
    with pytest.raises(SchemaError, match="mail_users.session_epoch"):
        schema_check.checked_upgrade(blank)
    assert current_revision(blank) == BASELINE
