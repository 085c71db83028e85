"""What every ``smshub`` command shares: the config and engine of this run, one-line errors
with their exit code, JSON or text output, tables, and the options said the same way
everywhere. Group modules import it; it imports no group module.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from hub.core.config import Config, load_config
from hub.errors import HubError

# What one run of the command line holds: the --config path, then the config and the engine
# once a command asks for them. Tests clear it between runs.
_state: dict[str, Any] = {}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
AccountOpt = Annotated[
    str | None, typer.Option(help="The account (default: the only main account).")
]
SenderOpt = Annotated[str | None, typer.Option(help="Sender name or number.")]
SendAtOpt = Annotated[str | None, typer.Option(help="Send later, ISO 8601 (UTC if no offset).")]
OutputOpt = Annotated[Path | None, typer.Option(help="Write here instead of stdout.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def get_config() -> Config:
    if "config" not in _state:
        try:
            _state["config"] = load_config(_state.get("config_path"))
        except HubError as exc:
            fail(str(exc), exc.exit_code)
    config: Config = _state["config"]
    return config


def get_engine() -> Any:
    if "engine" not in _state:
        from hub.store.db import current_revision, make_engine, upgrade

        config = get_config()
        engine = make_engine(config.database_url, busy_timeout=config.database.sqlite_busy_timeout)
        if current_revision(engine) is None:
            # A first command on a new machine should just work: create the schema.
            upgrade(engine)
        # A balance change made here that crosses an alert threshold is alerted once committed.
        from hub.inbound import alerts
        from hub.sending import balance_alert

        balance_alert.on_crossing(alerts.alert_committed)
        _state["engine"] = engine
    return _state["engine"]


def emit(data: Any, as_json: bool, text: str | None = None, *, ok: bool = True) -> None:
    """Print DATA as JSON, or TEXT (DATA when none); exit 1 after it when not OK."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(text if text is not None else data)
    if not ok:
        raise typer.Exit(1)


def run_db(fn: Any) -> Any:
    """Run FN(session) in a transaction, turning hub errors into one-line messages."""
    from hub.store.db import session_scope

    try:
        with session_scope(get_engine()) as session:
            return fn(session)
    except HubError as exc:
        fail(str(exc), exc.exit_code)


def default_account(session: Any) -> str:
    """The one main account, for commands whose --account may be left out."""
    from sqlmodel import select

    from hub.store.models import Account

    mains = session.exec(select(Account).where(Account.parent_id == None)).all()  # noqa: E711
    if len(mains) == 1:
        return str(mains[0].name)
    if not mains:
        raise HubError("there is no account yet; create one with `smshub accounts create NAME`")
    raise HubError(
        f"several accounts exist ({', '.join(a.name for a in mains)}); choose one with --account"
    )


def account_or_default(session: Any, account: str | None) -> Any:
    """The account named by --account, else the only main account."""
    from hub.sending.accounts import get_account

    return get_account(session, account or default_account(session))


def run_on_account(account: str | None, fn: Any) -> Any:
    """Run FN(session, account row) in a transaction for --account (else the only main
    account), as ``run_db`` does: the CLI's side of the API's ``who.on_account``."""
    return run_db(lambda session: fn(session, account_or_default(session, account)))


def merge_fields(values: list[str] | None) -> dict[str, str]:
    """--field NAME=VALUE options as a dict of merge fields."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            fail(f"--field {item!r} must be NAME=VALUE, e.g. --field first_name=Jeanne")
        out[key.strip()] = value
    return out


def stdin_text() -> str:
    """Standard input without the final newline that `echo` and editors add."""
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def text_arg(text: str) -> str:
    """A text option where '-' means standard input."""
    return stdin_text() if text == "-" else text


def send_time(at: str | None) -> datetime | None:
    """--at as a datetime (None when not given); a malformed time is a one-line error."""
    if not at:
        return None
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        fail(f"--at {at!r} is not an ISO 8601 time such as 2026-12-01T09:00:00+01:00")


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def write_or_print(data: bytes, output: Path | None, what: str) -> None:
    """DATA to the file OUTPUT (saying so), else as it is to standard output."""
    if output is None:
        typer.echo(data, nl=False)
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    typer.echo(f"{what} written to {output}")
