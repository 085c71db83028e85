"""The `smshub` command line: the root group, its --config option and `run`; every other
command lives in a group module, mounted here in the order `smshub --help` lists them."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.cli import answers, calendar_rules  # noqa: F401  (they add commands to calendars)
from hub.cli.accounts import accounts_app
from hub.cli.blacklist import blacklist_app
from hub.cli.calendars import calendar_app, calendars_app, reminders_app
from hub.cli.campaigns import campaigns_app
from hub.cli.common import _state, fail, get_config
from hub.cli.contacts import contacts_app, lists_app
from hub.cli.db import db_app
from hub.cli.links import files_app, links_app
from hub.cli.lists import invalid_app
from hub.cli.mail import mail_app
from hub.cli.mailboxes import mailboxes_app
from hub.cli.messages import messages_app, send
from hub.cli.numbers import numbers_app
from hub.cli.reply import reply_app
from hub.cli.secrets import secrets_app
from hub.cli.simulator import simulator_app
from hub.cli.sms import sms_app
from hub.cli.templates import templates_app
from hub.cli.tokens import tokens_app
from hub.cli.users import users_app
from hub.cli.webhooks import webhooks_app
from hub.errors import HubError

app = typer.Typer(
    help="smshub: send SMS from e-mail, calendars, the command line and an HTTP API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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


app.command()(send)
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
    (calendars_app, "calendars"),
    (reminders_app, "reminders"),
    # `calendar preview` (singular): dry runs on a file or URL, apart from connected ones.
    (calendar_app, "calendar"),
    (users_app, "users"),
    (webhooks_app, "webhooks"),
    (invalid_app, "invalid"),
    (files_app, "files"),
    (links_app, "links"),
    (secrets_app, "secrets"),
    (mailboxes_app, "mailboxes"),
    (contacts_app, "contacts"),
    (lists_app, "lists"),
    (templates_app, "templates"),
    (campaigns_app, "campaigns"),
]:
    app.add_typer(sub, name=name)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except HubError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
