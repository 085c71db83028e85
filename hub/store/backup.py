"""Online backup and restore of the embedded SQLite database (`smshub db backup|restore`).

SQLite's backup API copies a consistent snapshot while the hub keeps running (in WAL mode
writers are not blocked), unlike copying the file, which can catch it mid-transaction and
misses what is still in the -wal file. PostgreSQL databases are backed up with pg_dump
(docs/deploy.md).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from hub.errors import BackupError, InvalidInput

PG_ADVICE = (
    "this database is PostgreSQL: back it up with `pg_dump --format=custom --file=FILE "
    "DBNAME` and restore with `pg_restore --clean --if-exists --dbname=DBNAME FILE` "
    "(docs/deploy.md, 'Backups')"
)


@dataclass
class BackupInfo:
    path: Path
    size: int
    revision: str | None


def sqlite_path(engine: Engine) -> Path:
    """The file of ENGINE's SQLite database (BackupError for anything else)."""
    if engine.dialect.name != "sqlite":
        raise BackupError(PG_ADVICE)
    database = engine.url.database
    if not database or database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(database)


def _verify(path: Path) -> str | None:
    """The schema revision of the SQLite file PATH after an integrity check (raises)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise BackupError(f"{path} is damaged: {verdict}")
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an smshub SQLite database: {exc}") from None
    return row[0] if row else None


def backup(engine: Engine, target: Path, *, overwrite: bool = False) -> BackupInfo:
    """Copy ENGINE's SQLite database to TARGET while the hub runs, then check the copy."""
    source = sqlite_path(engine)
    if not source.exists():
        raise BackupError(f"there is no database at {source} yet")
    if target.exists() and not overwrite:
        raise InvalidInput(f"{target} exists; choose another name or pass --overwrite")
    if target.resolve() == source.resolve():
        raise InvalidInput("the backup must not be the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed once whole: a failed backup never leaves a
    # truncated file under the name a restore would use.
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    try:
        # One step (pages=-1): a single consistent snapshot; WAL lets the hub write meanwhile.
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()
    revision = _verify(partial)
    os.replace(partial, target)
    return BackupInfo(target, target.stat().st_size, revision)


def restore(engine: Engine, backup_file: Path) -> BackupInfo:
    """Replace ENGINE's SQLite database by BACKUP_FILE (the hub must be stopped).

    Done with the backup API into the live file, not by copying over it, so SQLite's own
    journal and WAL files stay consistent with what is restored."""
    target = sqlite_path(engine)
    if not backup_file.is_file():
        raise InvalidInput(f"there is no backup at {backup_file}")
    revision = _verify(backup_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=5)
    try:
        src.backup(dst)
    except sqlite3.OperationalError as exc:
        raise BackupError(
            f"cannot write {target} ({exc}): stop every smshub using it first"
        ) from None
    finally:
        dst.close()
        src.close()
    return BackupInfo(target, target.stat().st_size, revision)
