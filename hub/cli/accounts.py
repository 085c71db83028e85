"""`smshub accounts ...`: accounts, sub-accounts, credits and their settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer

from hub.cli.alerts import accounts_alert
from hub.cli.common import JsonOpt, emit, get_config, run_db, table
from hub.core.config import Config

accounts_app = typer.Typer(help="Accounts, sub-accounts and credits.", no_args_is_help=True)


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
        table(
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
    changes = _Changes(
        region,
        sender,
        route,
        reply_mailbox,
        autoreply,
        autoreply_period,
        night,
        night_start,
        night_end,
        track_links,
        locale,
    )
    config = get_config()
    typer.echo(run_db(lambda s: _apply(s, config, name, changes)))


@dataclass(frozen=True)
class _Changes:
    """The options of `accounts set`; None leaves a setting as it is."""

    region: str | None
    sender: str | None
    route: str | None
    reply_mailbox: str | None
    autoreply: str | None
    autoreply_period: float | None
    night: str | None
    night_start: str | None
    night_end: str | None
    track_links: bool | None
    locale: str | None


def _apply(session: Any, config: Config, name: str, c: _Changes) -> str:
    """Change what C gives of account NAME; one line said per setting changed."""
    from hub.sending import account_settings as rules
    from hub.sending.accounts import get_account

    acc = get_account(session, name)
    said: list[str] = []
    if c.region is not None:
        said.append(rules.set_region(config, acc, c.region))
    if c.sender is not None:
        said.append(rules.set_sender(config, acc, c.sender))
    if c.route is not None:
        said.append(_set_route(config, acc, c.route))
    if c.reply_mailbox is not None:
        said.append(rules.set_reply_mailbox(acc, c.reply_mailbox))
    if c.autoreply is not None or c.autoreply_period is not None:
        said.append(_set_autoreply(config, acc, c.autoreply, c.autoreply_period))
    if c.night is not None or c.night_start is not None or c.night_end is not None:
        said.append(
            rules.set_night(
                acc,
                acc.night_mode if c.night is None else c.night,
                acc.night_start if c.night_start is None else c.night_start,
                acc.night_end if c.night_end is None else c.night_end,
            )
        )
    if c.track_links is not None:
        said.append(rules.set_track_links(acc, c.track_links))
    if c.locale is not None:
        said.append(rules.set_locale(config, acc, c.locale))
    session.add(acc)
    return "\n".join(said) or f"account {acc.name}: nothing to change (give an option)"


def _set_route(config: Config, acc: Any, route: str) -> str:
    from hub.errors import InvalidInput

    names = [n.strip() for n in route.split(",") if n.strip()]
    unknown = [n for n in names if n not in config.providers]
    if unknown:
        raise InvalidInput(
            f"--route names unknown provider(s) {', '.join(unknown)}; "
            f"configured: {', '.join(config.providers)}"
        )
    acc.route = ",".join(names)
    return f"{acc.name} sends through {acc.route or 'the default route'}."


def _set_autoreply(config: Config, acc: Any, text: str | None, period: float | None) -> str:
    from hub.sending import account_settings as rules

    enabled = acc.autoreply_enabled if text is None else bool(text.strip())
    hours = acc.autoreply_period_hours if period is None else period
    return rules.set_autoreply(
        config, acc, enabled, acc.autoreply_text if text is None else text, str(hours)
    )


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


accounts_app.command("alert")(accounts_alert)
