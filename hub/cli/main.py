"""The `smshub` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from hub.core.config import Config, load_config
from hub.errors import HubError

app = typer.Typer(
    help="smshub: send SMS from e-mail, calendars, the command line and an HTTP API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
accounts_app = typer.Typer(help="Accounts, sub-accounts and credits.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (shown once, stored hashed).", no_args_is_help=True)
messages_app = typer.Typer(help="Sent and scheduled messages.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
numbers_app = typer.Typer(help="Phone number checks.", no_args_is_help=True)
sms_app = typer.Typer(help="SMS text tools.", no_args_is_help=True)
simulator_app = typer.Typer(help="The built-in SMS simulator.", no_args_is_help=True)
blacklist_app = typer.Typer(
    help="Numbers an account never sends to (STOP and manual opt-outs).", no_args_is_help=True
)
reply_app = typer.Typer(help="E-mail answers to forwarded SMS.", no_args_is_help=True)
mail_app = typer.Typer(
    help="Mail to SMS: intake addresses, SMTP users, dry runs.", no_args_is_help=True
)
for sub, name in [
    (accounts_app, "accounts"),
    (tokens_app, "tokens"),
    (messages_app, "messages"),
    (db_app, "db"),
    (numbers_app, "numbers"),
    (sms_app, "sms"),
    (simulator_app, "simulator"),
    (mail_app, "mail"),
    (blacklist_app, "blacklist"),
    (reply_app, "reply"),
]:
    app.add_typer(sub, name=name)

_state: dict[str, Any] = {}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


@app.callback()
def _main(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            envvar="SMSHUB_CONFIG",
            help="Config file (TOML). Default: embedded defaults.",
        ),
    ] = None,
) -> None:
    _state["config_path"] = config


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


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(text if text is not None else data)


def run_db(fn: Any) -> Any:
    """Run FN(session) in a transaction, turning hub errors into one-line messages."""
    from hub.store.db import session_scope

    try:
        with session_scope(get_engine()) as session:
            return fn(session)
    except HubError as exc:
        fail(str(exc), exc.exit_code)


def _stdin_text() -> str:
    """Standard input without the final newline that `echo` and editors add."""
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def _table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


# -- run -------------------------------------------------------------------------------------
@app.command()
def run(
    role: Annotated[
        str, typer.Option(help="all, or a comma list of: api, dispatcher, scheduler, smtp, imap")
    ] = "all",
) -> None:
    """Start the hub: HTTP API, SMTP intake, dispatcher and scheduler in one process."""
    from hub.runtime.server import serve

    config = get_config()
    every = {"api", "dispatcher", "scheduler", "smtp", "imap"}
    roles = every if role == "all" else set(role.split(","))
    unknown = roles - every
    if unknown:
        fail(f"unknown role(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(every))}")
    try:
        asyncio.run(serve(config, roles))
    except HubError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        pass


# -- db --------------------------------------------------------------------------------------
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
    emit(data, as_json, "\n".join(lines))
    if not state.ok:
        raise typer.Exit(1)


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


# -- accounts --------------------------------------------------------------------------------
@accounts_app.command("create")
def accounts_create(
    name: str,
    parent: Annotated[str | None, typer.Option(help="Make it a sub-account of PARENT.")] = None,
    unlimited: Annotated[
        bool, typer.Option(help="Sub-account draws from its parent's credits.")
    ] = False,
    region: Annotated[
        str | None, typer.Option(help="Default country for national numbers.")
    ] = None,
    sender: Annotated[str | None, typer.Option(help="Default sender name or number.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an account (or a sub-account with --parent)."""
    from hub.sending.accounts import create_account

    def _do(session: Any) -> dict[str, Any]:
        acc = create_account(
            session,
            name,
            parent=parent,
            region=region,
            sender=sender,
            credit_mode="unlimited" if unlimited else "limited",
        )
        return {"name": acc.name, "id": acc.id, "parent": parent, "credit_mode": acc.credit_mode}

    data = run_db(_do)
    emit(data, as_json, f"created account {name}" + (f" under {parent}" if parent else ""))


@accounts_app.command("list")
def accounts_list(as_json: JsonOpt = False) -> None:
    """List accounts with their balances."""
    from sqlmodel import col, select

    from hub.store.models import Account

    def _do(session: Any) -> list[dict[str, Any]]:
        rows = session.exec(select(Account).order_by(col(Account.id))).all()
        names = {a.id: a.name for a in rows}
        return [
            {
                "name": a.name,
                "parent": names.get(a.parent_id),
                "credit_mode": a.credit_mode,
                "balance": a.balance,
                "disabled": a.disabled,
            }
            for a in rows
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        _table(
            [
                [
                    d["name"],
                    d["parent"] or "-",
                    d["credit_mode"],
                    d["balance"] if d["credit_mode"] == "limited" else "(parent)",
                    "disabled" if d["disabled"] else "",
                ]
                for d in data
            ],
            ["NAME", "PARENT", "CREDITS", "BALANCE", ""],
        )
        if data
        else "no accounts yet; create one with `smshub accounts create NAME`",
    )


@accounts_app.command("show")
def accounts_show(name: str, as_json: JsonOpt = False) -> None:
    """Show an account: balance, parent, sub-accounts and recent ledger."""
    from sqlmodel import col, select

    from hub.sending.accounts import ancestors, get_account
    from hub.store.models import LedgerEntry
    from hub.store.views import account_view

    def _do(session: Any) -> dict[str, Any]:
        acc = get_account(session, name)
        data = account_view(session, acc, ancestors(session, acc))
        ledger = session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == acc.id)
            .order_by(col(LedgerEntry.id).desc())
            .limit(20)
        ).all()
        data["ledger"] = [
            {
                "kind": e.kind,
                "amount": e.amount,
                "balance_after": e.balance_after,
                "note": e.note,
                "at": e.created_at.isoformat(),
            }
            for e in ledger
        ]
        return data

    data = run_db(_do)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "ledger"]
    if data["ledger"]:
        lines.append("recent ledger:")
        lines += [
            f"  {e['at'][:19]}  {e['kind']:<12} {e['amount']:>+8}  -> {e['balance_after']}"
            f"  {e['note']}"
            for e in data["ledger"]
        ]
    emit(data, as_json, "\n".join(lines))


@accounts_app.command("set")
def accounts_set(
    name: str,
    region: Annotated[
        str | None, typer.Option(help="Default country for national numbers.")
    ] = None,
    sender: Annotated[str | None, typer.Option(help="Default sender ('' to clear).")] = None,
    route: Annotated[
        str | None,
        typer.Option(help="Providers tried in order, e.g. kannel,simulator ('' = default)."),
    ] = None,
    reply_mailbox: Annotated[
        str | None, typer.Option(help="Where answers to this account's SMS are forwarded.")
    ] = None,
    autoreply: Annotated[
        str | None, typer.Option(help="Auto-responder text ('' turns it off).")
    ] = None,
    autoreply_period: Annotated[
        float | None, typer.Option(help="Hours between two auto-replies to one number.")
    ] = None,
    night: Annotated[
        str | None,
        typer.Option(
            help="Night hours for every send: off, hold (kept until --night-end) or warn "
            "(sent, with a warning). In the recipient's local time."
        ),
    ] = None,
    night_start: Annotated[
        str | None, typer.Option(help="When the night starts, HH:MM (default 21:00).")
    ] = None,
    night_end: Annotated[
        str | None, typer.Option(help="When the night ends, HH:MM (default 08:00).")
    ] = None,
    track_links: Annotated[
        bool | None,
        typer.Option(
            "--track-links/--no-track-links",
            help="Click tracking by default: URLs in SMS from the API, console, campaigns and "
            "mail become per-recipient short links.",
        ),
    ] = None,
    locale: Annotated[
        str | None,
        typer.Option(
            help="Language of the mails and SMS texts the hub writes for the account: fr or "
            "en ('' = [hub] locale, else the region's language)."
        ),
    ] = None,
) -> None:
    """Change an account's settings (only the options given), checked as the web console
    checks them."""
    from hub.errors import InvalidInput
    from hub.sending import account_settings as rules
    from hub.sending.accounts import get_account

    config = get_config()

    def _do(session: Any) -> str:
        acc = get_account(session, name)
        said: list[str] = []
        if region is not None:
            said.append(rules.set_region(config, acc, region))
        if sender is not None:
            said.append(rules.set_sender(config, acc, sender))
        if route is not None:
            names = [n.strip() for n in route.split(",") if n.strip()]
            unknown = [n for n in names if n not in config.providers]
            if unknown:
                raise InvalidInput(
                    f"--route names unknown provider(s) {', '.join(unknown)}; "
                    f"configured: {', '.join(config.providers)}"
                )
            acc.route = ",".join(names)
            said.append(f"{acc.name} sends through {acc.route or 'the default route'}.")
        if reply_mailbox is not None:
            said.append(rules.set_reply_mailbox(acc, reply_mailbox))
        if autoreply is not None or autoreply_period is not None:
            text = acc.autoreply_text if autoreply is None else autoreply
            enabled = acc.autoreply_enabled if autoreply is None else bool(autoreply.strip())
            hours = acc.autoreply_period_hours if autoreply_period is None else autoreply_period
            said.append(rules.set_autoreply(config, acc, enabled, text, str(hours)))
        if night is not None or night_start is not None or night_end is not None:
            said.append(
                rules.set_night(
                    acc,
                    acc.night_mode if night is None else night,
                    acc.night_start if night_start is None else night_start,
                    acc.night_end if night_end is None else night_end,
                )
            )
        if track_links is not None:
            said.append(rules.set_track_links(acc, track_links))
        if locale is not None:
            said.append(rules.set_locale(config, acc, locale))
        session.add(acc)
        return "\n".join(said) or f"account {acc.name}: nothing to change (give an option)"

    typer.echo(run_db(_do))


@accounts_app.command("credit")
def accounts_credit(
    name: str,
    amount: int,
    note: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
) -> None:
    """Add AMOUNT credits to an account (a top-up)."""
    from hub.sending.credits import top_up

    balance = run_db(lambda s: top_up(s, name, amount, note, config=get_config()))
    typer.echo(f"{name}: +{amount} credits, balance {balance}")


@accounts_app.command("transfer")
def accounts_transfer(source: str, target: str, amount: int) -> None:
    """Move AMOUNT credits from an account to its sub-account (or back)."""
    from hub.sending.credits import transfer

    balance = run_db(lambda s: transfer(s, source, target, amount, config=get_config()))
    typer.echo(f"moved {amount} credits from {source} to {target}; {target} has {balance}")


@accounts_app.command("reset")
def accounts_reset(name: str) -> None:
    """Give a sub-account's whole balance back to its parent."""
    from hub.sending.credits import reset

    moved = run_db(lambda s: reset(s, name, config=get_config()))
    typer.echo(f"returned {moved} credits from {name} to its parent")


@accounts_app.command("disable")
def accounts_disable(
    name: str, enable: Annotated[bool, typer.Option("--enable", help="Enable it again.")] = False
) -> None:
    """Disable an account (it and its sub-accounts can no longer send)."""
    from hub.sending.accounts import set_disabled

    run_db(lambda s: set_disabled(s, name, not enable))
    typer.echo(f"account {name} {'enabled' if enable else 'disabled'}")


@accounts_app.command("enable")
def accounts_enable(name: str) -> None:
    """Enable a disabled account again: it (and its sub-accounts, unless one of them is
    disabled itself) can send again."""
    from hub.sending.accounts import set_disabled

    run_db(lambda s: set_disabled(s, name, False))
    typer.echo(f"account {name} enabled")


@accounts_app.command("check")
def accounts_check() -> None:
    """Verify that every balance equals the sum of its ledger and none is negative."""
    from hub.sending.credits import ledger_problems

    problems = run_db(ledger_problems)
    if problems:
        for p in problems:
            typer.echo(p, err=True)
        raise typer.Exit(1)
    typer.echo("ledger consistent")


# -- tokens ----------------------------------------------------------------------------------
@tokens_app.command("create")
def tokens_create(
    account: str,
    name: Annotated[str, typer.Option(help="A label, e.g. the app using it.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token for ACCOUNT; it is printed once and stored only as a hash."""
    from hub.sending.accounts import create_token

    def _do(session: Any) -> dict[str, Any]:
        new = create_token(session, account, name)
        return {
            "id": new.record.id,
            "token": new.token,
            "prefix": new.record.prefix,
            "account": account,
        }

    data = run_db(_do)
    emit(
        data,
        as_json,
        f"{data['token']}\n(token {data['id']} for {account}; "
        "store it now, it cannot be shown again)",
    )


@tokens_app.command("revoke")
def tokens_revoke(token: Annotated[str, typer.Argument(help="Token id or its prefix.")]) -> None:
    """Revoke an API token."""
    from hub.sending.accounts import revoke_token

    record = run_db(lambda s: revoke_token(s, token))
    typer.echo(f"token {record.id} ({record.prefix}…) revoked")


@tokens_app.command("list")
def tokens_list(
    account: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False
) -> None:
    """List API tokens (prefixes only)."""
    from sqlmodel import select

    from hub.sending.accounts import get_account
    from hub.store.models import ApiToken

    def _do(session: Any) -> list[dict[str, Any]]:
        query = select(ApiToken)
        if account:
            query = query.where(ApiToken.account_id == get_account(session, account).id)
        return [
            {
                "id": t.id,
                "prefix": t.prefix,
                "name": t.name,
                "account_id": t.account_id,
                "revoked": t.revoked_at is not None,
            }
            for t in session.exec(query).all()
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        _table(
            [
                [d["id"], d["prefix"] + "…", d["name"], "revoked" if d["revoked"] else ""]
                for d in data
            ],
            ["ID", "PREFIX", "NAME", ""],
        ),
    )


# -- send & messages --------------------------------------------------------------------------
def _default_account(session: Any) -> str:
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


@app.command()
def send(
    to: Annotated[list[str], typer.Option("--to", help="Recipient, any format; repeatable.")],
    text: Annotated[str, typer.Option(help="The message; '-' reads standard input.")],
    sender: Annotated[str | None, typer.Option(help="Sender name or number.")] = None,
    type_: Annotated[str, typer.Option("--type", help="alert (any time) or marketing.")] = "alert",
    at: Annotated[str | None, typer.Option(help="Send later, ISO 8601 (UTC if no offset).")] = None,
    account: Annotated[str | None, typer.Option(help="Account to send from.")] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="Retrying with the same key never sends twice; the key names one request "
            "(reused with other parameters it is refused) and is remembered for "
            "[sending] idempotency_key_hours.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue an SMS; the running hub's dispatcher sends it."""
    from hub.sending import idempotency
    from hub.sending import submit as sending
    from hub.sending.accounts import get_account

    if text == "-":
        text = _stdin_text()
    send_at = None
    if at:
        try:
            send_at = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r} is not an ISO 8601 time such as 2026-12-01T09:00:00+01:00")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
        fail("--idempotency-key must be 1 to 200 characters (as the API's Idempotency-Key)")
    config = get_config()

    def _do(session: Any) -> Any:
        name = account or _default_account(session)
        if idempotency_key:
            account_id = get_account(session, name).id
            assert account_id is not None
            # Recipients as given and in order, as the API's body: another list is another
            # request.
            request = {
                "to": to,
                "text": text,
                "sender": sender,
                "type": type_,
                "at": send_at.isoformat() if send_at else None,
            }
            print_ = idempotency.fingerprint("CLI", "send", account_id, request)
            idempotency.remember_in(session, account_id, idempotency_key, "cli", print_)
        return sending.submit_in(
            session,
            config,
            sending.SubmitRequest(
                account=name,
                recipients=to,
                text=text,
                sender=sender,
                type=type_,
                send_at=send_at,
                source="cli",
                idempotency_key=f"cli:{idempotency_key}" if idempotency_key else None,
            ),
        )

    result = run_db(_do)
    data = result.to_dict()
    if as_json:
        data["id"] = next((r.message_id for r in result.accepted), None)
        emit(data, True)
    else:
        for r in result.recipients:
            line = f"{r.input}: {r.status}"
            if r.message_id:
                line += f" {r.message_id}"
            if r.reason:
                line += f" ({r.reason})"
            typer.echo(line)
        typer.echo(
            f"{result.segments} part(s) {result.encoding}, {result.credits_charged} "
            f"credits, balance {result.balance_after}"
        )
    if not result.accepted:
        raise typer.Exit(1)


@messages_app.command("list")
def messages_list(
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    account: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recent messages, newest first."""
    from sqlmodel import col, select

    from hub.sending.accounts import get_account
    from hub.store.models import Message
    from hub.store.views import message_view

    def _do(session: Any) -> list[dict[str, Any]]:
        query = select(Message)
        if status:
            query = query.where(Message.status == status)
        if account:
            query = query.where(Message.account_id == get_account(session, account).id)
        rows = session.exec(query.order_by(col(Message.created_at).desc()).limit(limit)).all()
        return [message_view(m) for m in rows]

    data = run_db(_do)
    emit(
        data,
        as_json,
        _table(
            [
                [
                    d["id"],
                    d["created_at"][:19],
                    d["to"],
                    d["status"],
                    d["reason"] or "",
                    d["text"][:30],
                ]
                for d in data
            ],
            ["ID", "CREATED (UTC)", "TO", "STATUS", "REASON", "TEXT"],
        ),
    )


@messages_app.command("show")
def messages_show(message_id: str, as_json: JsonOpt = False) -> None:
    """Show one message and its history."""
    from sqlmodel import col, select

    from hub.errors import NotFound
    from hub.store.models import Message, MessageEvent
    from hub.store.views import message_view

    def _do(session: Any) -> dict[str, Any]:
        message = session.get(Message, message_id)
        if message is None:
            raise NotFound(f"no message {message_id!r} (list them with `smshub messages list`)")
        events = session.exec(
            select(MessageEvent)
            .where(MessageEvent.message_id == message_id)
            .order_by(col(MessageEvent.id))
        ).all()
        return message_view(message, events)

    data = run_db(_do)
    lines = [f"{k}: {v}" for k, v in data.items() if k != "events" and v is not None]
    lines += ["history:"] + [
        f"  {e['at'][:19]}  {e['status']}"
        + (f" ({e['reason']})" if e["reason"] else "")
        + (f" {e['detail']}" if e["detail"] else "")
        for e in data["events"]
    ]
    emit(data, as_json, "\n".join(lines))


@messages_app.command("cancel")
def messages_cancel(message_id: str, as_json: JsonOpt = False) -> None:
    """Cancel a queued or scheduled message; its credits are refunded."""
    from hub.sending import submit as sending
    from hub.store.views import message_view

    data = run_db(lambda s: message_view(sending.cancel(s, message_id)))
    emit(data, as_json, f"message {message_id} cancelled; {data['credits']} credits refunded")


# -- numbers & sms ----------------------------------------------------------------------------
@numbers_app.command("check")
def numbers_check(
    numbers: Annotated[list[str], typer.Argument(help="Numbers in any format.")],
    region: Annotated[str | None, typer.Option(help="Country for national numbers.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Normalize numbers to E.164 and tell mobile, landline, other or invalid."""
    from hub.core.phone import parse_number

    region = (region or get_config().hub.default_region).upper()
    data = [parse_number(n, region).to_dict() for n in numbers]
    emit(
        data,
        as_json,
        _table(
            [
                [d["input"], d["e164"] or "-", d["country"] or "-", d["type"], d["reason"] or ""]
                for d in data
            ],
            ["INPUT", "E.164", "COUNTRY", "TYPE", "REASON"],
        ),
    )
    if not any(d["valid"] for d in data):
        raise typer.Exit(1)


@sms_app.command("count")
def sms_count(
    text: Annotated[str, typer.Argument(help="The text; '-' reads standard input.")],
    type: Annotated[
        str, typer.Option("--type", help="alert or marketing (marketing may add the STOP mention).")
    ] = "alert",
    sender: Annotated[str | None, typer.Option(help="The sender the send will use.")] = None,
    country: Annotated[
        str | None, typer.Option(help="Recipient country (ISO) for the sender rules.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Count SMS parts exactly as the send will charge them (opt-out mention included)."""
    from hub.compliance import preview

    if type not in {"alert", "marketing"}:
        fail(f"--type must be 'alert' or 'marketing', not {type!r}")
    if text == "-":
        text = _stdin_text()
    config = get_config()
    country = (country or config.hub.default_region).upper()
    shown = preview(
        text,
        sender,
        type,
        country,
        mention=config.optout_mention,
        hours=config.marketing_hours,
        rules=config.compliance,
        public_url=config.hub.public_url,
    )
    lines = [
        f"{shown['segments']} part(s), {shown['encoding']}, {shown['characters']} "
        f"characters, length {shown['length']}, {shown['remaining']} left in the last part"
    ]
    if shown["mention_added"]:
        lines.append("text as sent:\n" + shown["text"])
    lines += [f"warning: {w}" for w in shown["warnings"]]
    lines += [f"error: {e}" for e in shown["errors"]]
    emit(shown, as_json, "\n".join(lines))
    if not shown["ok"]:
        raise typer.Exit(1)


# -- simulator --------------------------------------------------------------------------------
def _simulator(hub: Any) -> Any:
    for provider in hub.providers.values():
        if getattr(provider.settings, "type", None) == "simulator":
            return provider
    fail('no simulator provider is configured ([providers.NAME] with type = "simulator")')


@simulator_app.command("receive")
def simulator_receive(
    sender: Annotated[str, typer.Option("--from", help="The phone that answers.")],
    text: Annotated[str, typer.Option(help="What it says.")],
    to: Annotated[str | None, typer.Option(help="Our number it is sent to.")] = None,
) -> None:
    """Inject an inbound SMS, as if a phone had sent it."""
    from hub.app import Hub
    from hub.core.phone import parse_number

    config = get_config()
    info = parse_number(sender, config.hub.default_region)
    number = info.e164 or sender

    async def _go() -> bool:
        hub = Hub(config, engine=get_engine())
        await hub.start(dispatcher=False)
        try:
            return bool(await _simulator(hub).receive(number, text, to))
        finally:
            await hub.stop()

    if not asyncio.run(_go()):
        fail("the hub did not accept the inbound SMS; see the log above")
    typer.echo(f"inbound SMS from {number} received")


@simulator_app.command("log")
def simulator_log(
    to: Annotated[str | None, typer.Option(help="Only SMS to this number (E.164).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show the SMS the simulator has 'sent'."""
    from hub.app import Hub

    provider = _simulator(Hub(get_config(), engine=get_engine()))
    # Streamed: only the last LIMIT matching entries are held, however long the log.
    entries = list(
        deque(
            (e for e in provider.iter_log() if e.get("kind") == "mt" and (not to or e["to"] == to)),
            maxlen=limit,
        )
    )
    emit(
        entries,
        as_json,
        _table(
            [[e["at"][:19], e["to"], e["from"] or "", e["text"][:40]] for e in entries],
            ["AT (UTC)", "TO", "FROM", "TEXT"],
        ),
    )


# -- mail -----------------------------------------------------------------------------------
@mail_app.command("address")
def mail_address(
    account: str,
    address: Annotated[
        str,
        typer.Argument(
            help="sms@hub.example.com, or *@sms.example.com for numbers in the address "
            "(+33612345678@sms.example.com)."
        ),
    ],
    allow: Annotated[
        list[str] | None,
        typer.Option(
            help="Sender address or @domain allowed without SMTP AUTH; repeatable. Their "
            "Their From must be verified: by a relay of smtp.trusted_relays (on a "
            "connection from its networks) or by the hub's own DKIM/SPF/DMARC checks."
        ),
    ] = None,
    require_auth: Annotated[bool, typer.Option(help="Accept only SMTP AUTH users.")] = False,
    pin: Annotated[str | None, typer.Option(help="Require pin:PIN in the subject.")] = None,
    sender: Annotated[str | None, typer.Option(help="SMS sender for this address.")] = None,
    no_confirm: Annotated[bool, typer.Option(help="Send no confirmation e-mail.")] = False,
) -> None:
    """Make ADDRESS an intake address of ACCOUNT: mail to it becomes SMS."""
    from hub.mail.intake.addresses import add_intake_address

    run_db(
        lambda s: add_intake_address(
            s,
            account,
            address,
            allowed_senders=allow or [],
            require_auth=require_auth,
            pin=pin,
            sender=sender,
            confirm=not no_confirm,
        )
    )
    typer.echo(f"mail to {address} now sends SMS on account {account}")


@mail_app.command("user")
def mail_user(
    account: str,
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create an SMTP AUTH login of ACCOUNT (same as `smshub users add`: it also logs in to
    the web console)."""
    from hub.mail.intake.addresses import add_mail_user

    if password_stdin:
        password = _stdin_text().strip()
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    run_db(lambda s: add_mail_user(s, account, username, password))
    typer.echo(f"SMTP user {username} created for {account} (AUTH after STARTTLS)")


@mail_app.command("parse")
def mail_parse(
    file: Annotated[Path, typer.Argument(help="A mail as .eml (RFC 5322); '-' reads stdin.")],
    account: Annotated[
        str | None, typer.Option(help="Read national numbers as ACCOUNT would.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Dry run: show the numbers, text and parts a mail would send; sends nothing."""
    from hub.mail.intake.policy import IntakePolicy

    raw = sys.stdin.buffer.read() if str(file) == "-" else _read_bytes(file)
    try:
        data = IntakePolicy(get_engine(), get_config()).preview(raw, account=account)
    except HubError as exc:
        fail(str(exc), exc.exit_code)
    lines = [
        f"recipients: {', '.join(data['recipients']) or '(none)'}",
        f"text: {data['text']}",
        f"{data['segments']} part(s), {data['encoding']}",
    ]
    lines += [f"left out: {r['input']} ({r['reason']})" for r in data["rejected"]]
    lines += [f"note: {w}" for w in data["warnings"]]
    emit(data, as_json, "\n".join(lines))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


# -- blacklist ------------------------------------------------------------------------------
@blacklist_app.command("list")
def blacklist_list(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List blacklisted numbers with when and why."""
    from hub.sending.accounts import get_account
    from hub.sending.optout import blacklist_entries

    def _do(session: Any) -> list[dict[str, Any]]:
        ids = [get_account(session, account).id or 0] if account else None
        return [
            {
                "account": name,
                "number": e.number,
                "source": e.source,
                "note": e.note,
                "since": e.created_at.isoformat(),
            }
            for e, name in blacklist_entries(session, ids)
        ]

    data = run_db(_do)
    emit(
        data,
        as_json,
        _table(
            [
                [d["account"], d["number"], d["source"], d["since"][:19], d["note"][:40]]
                for d in data
            ],
            ["ACCOUNT", "NUMBER", "SOURCE", "SINCE (UTC)", "NOTE"],
        ),
    )


@blacklist_app.command("add")
def blacklist_add(
    account: str,
    numbers: Annotated[list[str], typer.Argument(help="Numbers in any format.")],
    note: Annotated[str, typer.Option(help="Why (kept with each entry).")] = "",
) -> None:
    """Blacklist numbers by hand."""
    from hub.sending.optout import add_numbers

    region = get_config().hub.default_region
    report = run_db(
        lambda s: add_numbers(s, account, numbers, source="manual", note=note, region=region)
    )
    _print_import(report)


@blacklist_app.command("import")
def blacklist_import(
    account: str,
    file: Annotated[Path, typer.Argument(help="CSV or TXT; the number is in the first column.")],
    note: Annotated[str, typer.Option(help="Why (kept with each entry).")] = "",
) -> None:
    """Blacklist every number of a file; lines that are not numbers are reported."""
    from hub.sending.optout import add_numbers, numbers_in_file

    region = get_config().hub.default_region
    numbers = numbers_in_file(_read_bytes(file))
    report = run_db(
        lambda s: add_numbers(
            s,
            account,
            numbers,
            source="import",
            note=note or f"import of {file.name}",
            region=region,
        )
    )
    _print_import(report)


def _print_import(report: Any) -> None:
    typer.echo(f"{report.added} added, {report.already} already on the blacklist")
    for line, raw, why in report.rejected or []:
        typer.echo(f"  line {line}: {raw!r} left out ({why})")


@blacklist_app.command("remove")
def blacklist_remove(
    account: str,
    number: str,
    reason: Annotated[str, typer.Option(help="The recorded consent: who asked, how, when.")],
) -> None:
    """Take a number off the blacklist; the consent reason is recorded."""
    from hub.sending.optout import remove_number

    region = get_config().hub.default_region
    run_db(lambda s: remove_number(s, account, number, reason, region))
    typer.echo(f"{number} removed from the blacklist of {account}")


# -- reply ----------------------------------------------------------------------------------
@reply_app.command("parse")
def reply_parse(
    file: Annotated[Path, typer.Argument(help="The answer as .eml; '-' reads stdin.")],
    as_json: JsonOpt = False,
) -> None:
    """Dry run: the text an e-mail answer would send by SMS (quotes and signature removed)."""
    from hub.mail.parse import extract_reply_text

    raw = sys.stdin.buffer.read() if str(file) == "-" else _read_bytes(file)
    text = extract_reply_text(raw)
    emit({"text": text}, as_json, text or "(no new text in this answer)")


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _register_subcommands() -> None:
    # Sub-command groups living in their own modules (they import helpers from here).
    from hub.cli.alerts import accounts_alert
    from hub.cli.answers import reminders_answers  # noqa: F401  (registers the command)
    from hub.cli.calendar_rules import calendars_rules  # noqa: F401  (registers the command)
    from hub.cli.calendars import calendar_app, calendars_app, reminders_app
    from hub.cli.contacts import campaigns_app, contacts_app, lists_app, templates_app
    from hub.cli.links import files_app, links_app
    from hub.cli.lists import invalid_app
    from hub.cli.mailboxes import mailboxes_app
    from hub.cli.secrets import secrets_app
    from hub.cli.users import users_app
    from hub.cli.webhooks import webhooks_app

    app.add_typer(calendars_app, name="calendars")
    app.add_typer(reminders_app, name="reminders")
    # `calendar preview` (singular): dry runs on a file or URL, apart from connected ones.
    app.add_typer(calendar_app, name="calendar")
    app.add_typer(users_app, name="users")
    app.add_typer(webhooks_app, name="webhooks")
    app.add_typer(invalid_app, name="invalid")
    app.add_typer(files_app, name="files")
    app.add_typer(links_app, name="links")
    app.add_typer(secrets_app, name="secrets")
    app.add_typer(mailboxes_app, name="mailboxes")
    accounts_app.command("alert")(accounts_alert)
    app.add_typer(contacts_app, name="contacts")
    app.add_typer(lists_app, name="lists")
    app.add_typer(templates_app, name="templates")
    app.add_typer(campaigns_app, name="campaigns")


_register_subcommands()
