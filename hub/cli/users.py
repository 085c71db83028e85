"""`smshub users ...`: account users, who log in to the web console and send mail by SMTP AUTH."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli.common import JsonOpt, emit, get_config, run_db, stdin_text

users_app = typer.Typer(
    help="Account users: web console logins (the same login sends mail with SMTP AUTH).",
    no_args_is_help=True,
)


@users_app.command("add")
def users_add(
    account: Annotated[str, typer.Argument(help="The account the user works for.")],
    username: Annotated[str, typer.Argument(help="The login name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user of ACCOUNT: sees ACCOUNT and its sub-accounts in the console."""
    from hub.mail.intake.addresses import add_mail_user

    if password_stdin:
        password = stdin_text().strip()
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    run_db(lambda s: add_mail_user(s, account, username, password))
    config = get_config()
    typer.echo(
        f"user {username} created for {account}: log in at "
        f"{config.hub.public_url.rstrip('/')}/console (also SMTP AUTH after STARTTLS)"
    )


@users_app.command("list")
def users_list(
    account: Annotated[str | None, typer.Option(help="Only this account's users.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List users with their account and whether they are disabled."""
    from sqlmodel import Session, col, select

    from hub.sending.accounts import get_account
    from hub.store.models import Account, MailUser

    def _list(session: Session) -> list[dict[str, object]]:
        query = (
            select(MailUser, Account)
            .join(Account, col(Account.id) == MailUser.account_id)
            .order_by(col(MailUser.username))
        )
        if account:
            query = query.where(MailUser.account_id == get_account(session, account).id)
        return [
            {"username": u.username, "account": a.name, "disabled": u.disabled}
            for u, a in session.exec(query).all()
        ]

    rows = run_db(_list)
    text = "\n".join(
        f"{r['username']}\t{r['account']}" + ("\tdisabled" if r["disabled"] else "") for r in rows
    )
    emit(rows, as_json, text or "no users yet: create one with `smshub users add ACCOUNT NAME`")
