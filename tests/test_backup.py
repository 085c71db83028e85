"""Backups that were restored: SQLite's online backup (`smshub db backup|restore`) taken while
the hub writes, and pg_dump / pg_restore for PostgreSQL, as docs/deploy.md tells."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from hub.cli import main as hub_cli
from hub.cli.main import app
from hub.core.config import Config
from hub.sending import submit as sending
from hub.sending.credits import ledger_problems
from hub.store.db import make_engine, session_scope
from hub.store.schema_check import inspect_schema
from tests.conftest import require_server
from tests.test_migrations import snapshot


def cli(config_file: Path, *args: str) -> Any:
    hub_cli._state.clear()
    return CliRunner().invoke(app, ["--config", str(config_file), *args])


def send(engine: Engine, config: Config, account: str, n: int) -> None:
    sending.submit(engine, config, sending.SubmitRequest(account, [f"+3361234{n:04d}"], f"#{n}"))


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        messages = conn.execute(text("SELECT COUNT(*) FROM messages")).scalar_one()
        ledger = conn.execute(text("SELECT COUNT(*) FROM ledger")).scalar_one()
    return messages, ledger


def consistent(engine: Engine) -> bool:
    with session_scope(engine) as session:
        balanced = ledger_problems(session) == []
    return balanced and inspect_schema(engine).ok


def test_a_backup_taken_while_the_hub_writes_restores_whole(
    engine: Engine, config: Config, account: str, tmp_path: Path, db_url: str
) -> None:
    for n in range(20):
        send(engine, config, account, n)
    config_file = tmp_path / "smshub.toml"
    config_file.write_text(f'[hub]\ndata_dir = "{tmp_path}"\n[database]\nurl = "{db_url}"\n')
    backup = tmp_path / "backups" / "smshub.backup"

    # A writer keeps submitting while the backup is taken: the copy is one consistent moment.
    stop = threading.Event()

    def writer() -> None:
        n = 100
        while not stop.is_set() and n < 180:
            send(engine, config, account, n)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        if db_url.startswith("sqlite"):
            result = cli(config_file, "db", "backup", str(backup))
            assert result.exit_code == 0, result.output
            assert "schema revision" in result.output and "smshub db restore" in result.output
        else:
            pg_dump(db_url, backup)
    finally:
        stop.set()
        thread.join()

    saved = restore_elsewhere(db_url, backup, tmp_path)
    assert consistent(saved), "the copy is a consistent moment: balances match the ledger"
    at_backup = snapshot(saved)
    assert len(at_backup["messages"]) >= 20
    drop_restored(saved, db_url)

    # Life goes on after the backup; then the operator restores it.
    for n in range(200, 210):
        send(engine, config, account, n)
    assert counts(engine)[0] > len(at_backup["messages"])
    engine.dispose()
    if db_url.startswith("sqlite"):
        assert cli(config_file, "db", "restore", str(backup)).exit_code != 0, "asks for --yes"
        result = cli(config_file, "db", "restore", str(backup), "--yes")
        assert result.exit_code == 0, result.output
    else:
        pg_restore(db_url, backup, clean=True)
    restored = make_engine(db_url)
    try:
        assert snapshot(restored) == at_backup
        assert consistent(restored)
        send(restored, config, account, 300)  # and the hub works on it
    finally:
        restored.dispose()


def test_db_backup_on_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    config_file = tmp_path / "smshub.toml"
    config_file.write_text('[database]\nurl = "postgresql://smshub@db.example:5432/smshub"\n')
    result = cli(config_file, "db", "backup", str(tmp_path / "x"))
    assert result.exit_code == 1
    assert "pg_dump --format=custom" in result.output and "pg_restore" in result.output


def test_a_backup_never_overwrites_by_surprise(engine: Engine, tmp_path: Path, db_url: str) -> None:
    if not db_url.startswith("sqlite"):
        return  # pg_dump's own --file; the SQLite command is the hub's
    config_file = tmp_path / "smshub.toml"
    config_file.write_text(f'[database]\nurl = "{db_url}"\n')
    target = tmp_path / "b.db"
    target.write_text("precious")
    result = cli(config_file, "db", "backup", str(target))
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert target.read_text() == "precious"
    assert cli(config_file, "db", "backup", str(target), "--overwrite").exit_code == 0
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    result = cli(config_file, "db", "restore", str(broken), "--yes")
    assert result.exit_code == 1 and "not an smshub SQLite database" in result.output


# -- PostgreSQL: the commands docs/deploy.md gives -------------------------------------------------
def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        require_server(name, "install Debian's postgresql-client")
    assert found is not None
    return found


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def pg_dump(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_tool("pg_dump"), "--format=custom", f"--file={target}", _libpq(url)],
        check=True,
        capture_output=True,
    )


def pg_restore(url: str, backup: Path, *, clean: bool = False) -> None:
    args = [_tool("pg_restore"), "--no-owner", f"--dbname={_libpq(url)}"]
    if clean:
        args += ["--clean", "--if-exists", "--single-transaction"]
    subprocess.run([*args, str(backup)], check=True, capture_output=True)


def restore_elsewhere(url: str, backup: Path, tmp_path: Path) -> Engine:
    """The backup, opened apart from the live database (a copy, or a new database)."""
    if url.startswith("sqlite"):
        copy = tmp_path / "inspect.db"
        shutil.copy(backup, copy)
        return make_engine(f"sqlite:///{copy}")
    name = f"smshub_restore_{uuid.uuid4().hex[:8]}"
    engine = make_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    other = make_url(url).set(database=name).render_as_string(hide_password=False)
    pg_restore(other, backup)
    return make_engine(other)


def drop_restored(engine: Engine, url: str) -> None:
    """Drop the database restore_elsewhere made on PostgreSQL."""
    name = engine.url.database
    engine.dispose()
    if url.startswith("sqlite"):
        return
    admin = make_engine(url)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
