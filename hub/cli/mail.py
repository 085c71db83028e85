"""`smshub mail ...`: intake addresses, SMTP users and dry runs of mail to SMS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.common import (
    JsonOpt,
    emit,
    fail,
    get_config,
    get_engine,
    read_bytes,
    run_db,
    stdin_text,
)
from hub.errors import HubError

mail_app = typer.Typer(
    help="Mail to SMS: intake addresses, SMTP users, dry runs.", no_args_is_help=True
)


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
        password = stdin_text().strip()
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

    raw = sys.stdin.buffer.read() if str(file) == "-" else read_bytes(file)
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
