"""`smshub db ...`: create, migrate, check, back up and restore the database schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import JsonOpt, emit, fail, get_config
from hub.errors import HubError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest version.

    The schema is checked first: a database whose tables differ from what its revision
    makes (a pre-release build's) is refused, untouched, with what differs. Migrations only
    add (expand/contract, docs/deploy.md): instances of the previous version keep working
    during and after the upgrade, so run it once, from one machine, before starting the new
    version anywhere.
    """
    from hub.store.db import make_engine
    from hub.store.schema_check import checked_upgrade, head_revision

    config = get_config()
    engine = make_engine(config.database_url, busy_timeout=config.database.sqlite_busy_timeout)
    try:
        before, after = checked_upgrade(engine)
    except HubError as exc:
        fail(str(exc), exc.exit_code)
    where = engine.url.render_as_string(hide_password=True)
    if after != head_revision():
        typer.echo(
            f"database {where} is at revision {after}, newer than this version's "
            f"{head_revision()}: nothing to do (upgrade this instance's smshub)"
        )
    elif before == after:
        typer.echo(f"database {where} is up to date (revision {after})")
    else:
        typer.echo(f"database {where} migrated from {before or 'empty'} to {after}")


@db_app.command("current")
def db_current() -> None:
    """Print the schema revision."""
    from hub.store.db import current_revision, make_engine

    config = get_config()
    typer.echo(current_revision(make_engine(config.database_url)) or "empty")


@db_app.command("check")
def db_check(as_json: JsonOpt = False) -> None:
    """Compare the database's schema with what its revision makes; exit 1 on a difference.

    For a difference, prints the statements that would add what is missing: review them
    and back up before running any (docs/deploy.md, 'Schema check')."""
    from hub.store.db import make_engine
    from hub.store.schema_check import inspect_schema

    config = get_config()
    engine = make_engine(config.database_url, busy_timeout=config.database.sqlite_busy_timeout)
    state = inspect_schema(engine)
    data = {
        "status": state.status,
        "revision": state.revision,
        "head": state.head,
        "problems": state.problems,
        "fixes": state.fixes,
    }
    lines = [
        f"revision {state.revision or 'none (empty database)'}; this version's is {state.head}"
    ]
    if state.ok:
        lines.append("schema matches its revision")
    else:
        lines += ["differences:"] + [f"  {p}" for p in state.problems]
        if state.fixes:
            lines += ["statements that add what is missing (review, back up, then run):"]
            lines += [f"  {f};" for f in state.fixes]
    emit(data, as_json, "\n".join(lines), ok=state.ok)


@db_app.command("backup")
def db_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the copy.")],
    overwrite: Annotated[bool, typer.Option(help="Replace FILE if it exists.")] = False,
) -> None:
    """Copy the SQLite database to FILE while the hub runs (SQLite's online backup), then
    check the copy. PostgreSQL: use pg_dump (docs/deploy.md, 'Backups')."""
    from hub.store.backup import backup
    from hub.store.db import make_engine

    config = get_config()
    try:
        info = backup(make_engine(config.database_url), file, overwrite=overwrite)
    except HubError as exc:
        fail(str(exc), exc.exit_code)
    typer.echo(
        f"backed up to {info.path} ({info.size} bytes, schema revision {info.revision}); "
        f"restore with `smshub db restore {info.path}` after stopping the hub"
    )


@db_app.command("restore")
def db_restore(
    file: Annotated[Path, typer.Argument(help="A file made by `smshub db backup`.")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: the database's current content is lost.")
    ] = False,
) -> None:
    """Replace the SQLite database by a backup. Stop every smshub using it first."""
    from hub.store.backup import restore
    from hub.store.db import make_engine

    config = get_config()
    if not yes:
        fail("restoring replaces everything in the database: stop the hub, then add --yes")
    try:
        info = restore(make_engine(config.database_url), file)
    except HubError as exc:
        fail(str(exc), exc.exit_code)
    typer.echo(
        f"restored {file} into {info.path} (schema revision {info.revision}); "
        "`smshub db upgrade` if this version is newer, then start the hub"
    )
