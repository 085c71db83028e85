"""`smshub mailboxes ...`: the hub's mailboxes (IMAP intake, answers mailbox, SMTP relay),
their OAuth sign-in for headless installs, a test, and disconnecting.

The same operations as the console's Mailboxes page (hub/mail/mailboxes.py, hub/mail/oauth.py);
tokens go encrypted into the database, never to a file or the terminal.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hub.cli.common import JsonOpt, emit, fail, get_config, get_engine, table
from hub.errors import HubError
from hub.mail.mailboxes import configured_mailboxes, find_mailbox, oauth_problem
from hub.mail.oauth import PROVIDERS, disconnect, mailbox_state, scopes_for, store_grant
from hub.ports.oauth_flow import device_code_signin, pasted_code_finish, pasted_code_start
from hub.ports.registry import try_mailbox
from hub.store.state_sql import state_store

mailboxes_app = typer.Typer(
    help=(
        "The mailboxes named in the config ([[imap]] intake, [mail_out]): list them, sign "
        'in to those with auth = "xoauth2" (Microsoft 365 or Google), test, disconnect. '
        "Keys are shown by `smshub mailboxes list` (imap:NAME, or mail_out)."
    ),
    no_args_is_help=True,
)

# The console's callback: Google sends the browser back there; its address holds the code.
GOOGLE_PASTE_PATH = "/console/mailboxes/oauth/callback"


def _store() -> Any:
    return state_store(get_engine(), get_config())


def _fail(message: str) -> None:
    fail(message)


@mailboxes_app.command("list")
def mailboxes_list(as_json: JsonOpt = False) -> None:
    """The config's mailboxes, how they sign in, and what they last did."""

    config = get_config()
    store = _store()
    rows = []
    for box in configured_mailboxes(config):
        state = mailbox_state(store, box.key)
        rows.append(
            {
                "key": box.key,
                "use": box.kind,
                "host": box.host,
                "username": box.username,
                "auth": box.auth,
                "provider": box.provider,
                "connected": state.connected if box.oauth else None,
                "problem": oauth_problem(store, box),
                "last_activity": state.activity.get("at"),
                "last_error": state.activity.get("error") or None,
            }
        )
    text = table(
        [
            [
                r["key"],
                r["use"],
                f"{r['username']}@{r['host']}",
                r["provider"] or r["auth"],
                r["problem"] or ("connected" if r["connected"] else "ok"),
            ]
            for r in rows
        ],
        ["KEY", "USE", "MAILBOX", "SIGN-IN", "STATE"],
    )
    emit(rows, as_json, text if rows else "the config names no mailbox")


@mailboxes_app.command("auth")
def mailboxes_auth(
    key: Annotated[str, typer.Argument(help="The mailbox (see `smshub mailboxes list`).")],
) -> None:
    """Sign a mailbox in without the console (headless installs).

    Microsoft 365: a device code to enter at https://microsoft.com/devicelogin in any
    browser (the app registration of [calendar_oauth.microsoft] must allow public client
    flows). Google: open the printed address, consent, then paste the address the browser
    ends on (the hub's /console/mailboxes/oauth/callback, registered with the OAuth client;
    the page itself may show an error). The tokens are stored encrypted in the database.
    """

    config = get_config()
    try:
        box = find_mailbox(config, key)
        if not box.oauth:
            _fail(f'mailbox {key} signs in with a password; set auth = "xoauth2" to use OAuth')
        scopes = scopes_for(box.provider, box.transport)
        if box.provider == "microsoft":
            token = device_code_signin(config, scopes, lambda t: typer.echo(t, err=True))
            public = True
        else:
            started = pasted_code_start(config, scopes, GOOGLE_PASTE_PATH)
            typer.echo(
                f"Open this address, sign in as {box.username} and allow access:\n\n"
                f"{started.url}\n",
                err=True,
            )
            pasted = typer.prompt("Paste the address the browser ended on (or the code)")
            token = pasted_code_finish(config, started, pasted)
            public = False
        claims = token.get("id_token_claims") or {}
        account = str(claims.get("preferred_username") or box.username)
        store_grant(
            _store(),
            box.key,
            box.provider,
            str(token["refresh_token"]),
            public=public,
            account=account,
            access=token,
            scopes=scopes,
        )
    except HubError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("the sign-in was interrupted; nothing was stored")
    typer.echo(
        f"mailbox {key} connected with {PROVIDERS[box.provider]} as {account}; "
        f"test it with `smshub mailboxes test {key}`"
    )


@mailboxes_app.command("test")
def mailboxes_test(key: Annotated[str, typer.Argument(help="The mailbox.")]) -> None:
    """Intake: sign in and read its folder (nothing changed). [mail_out]: send a test mail to
    its own address (through the relay, or APPENDed to its folder)."""

    config = get_config()
    try:
        find_mailbox(config, key)
        said = try_mailbox(config, _store(), key)
    except (HubError, OSError) as exc:
        _fail(f"test of {key} failed: {exc}")
    typer.echo(f"test of {key} passed: {said}")


@mailboxes_app.command("disconnect")
def mailboxes_disconnect(key: Annotated[str, typer.Argument(help="The mailbox.")]) -> None:
    """Delete the mailbox's stored tokens; the hub stops signing in to it until connected
    again. (Withdraw the consent itself at the provider: the account's apps page.)"""

    try:
        find_mailbox(get_config(), key)
    except HubError as exc:
        _fail(str(exc))
    deleted = disconnect(_store(), key)
    typer.echo(f"mailbox {key} disconnected ({deleted} stored entries deleted)")
