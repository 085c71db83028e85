"""Console pages: the hub's mailboxes (IMAP intake, the answers mailbox, the SMTP relay):
connect by OAuth, test, see last activity and errors, disconnect.

Connecting runs the shared OAuth sign-in (hub/ports/oauth_flow.py: authorization code + PKCE, a
state signed with a key of its own and bound to the console user, a nonce cookie) asking
the mail scopes; the tokens go encrypted into the state store (hub/mail/oauth.py).
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response

from hub.console.auth import ConsoleUser, signing_key
from hub.console.page import Page
from hub.console.render import redirect, sign_in_redirect
from hub.core.i18n import gettext as _
from hub.errors import ConfigError, Forbidden, HubError, InvalidInput
from hub.mail.mailboxes import (
    Mailbox,
    configured_mailboxes,
    find_mailbox,
    oauth_problem,
    require_operator,
)
from hub.mail.oauth import PROVIDERS, disconnect, mailbox_state, scopes_for, store_grant
from hub.ports import oauth_flow
from hub.ports.registry import try_mailbox
from hub.store.db import read_scope

if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()

OAUTH_COOKIE = "smshub_mailbox_oauth"
OAUTH_PATH = "/console/mailboxes/oauth"
CALLBACK_PATH = "/console/mailboxes/oauth/callback"
PURPOSE = b"smshub console mailbox oauth"
PAGE = "the Mailboxes page"


def _key(hub: "Hub") -> bytes:
    return oauth_flow.signer_key(signing_key(hub.engine), PURPOSE)


def _operator(hub: "Hub", user: ConsoleUser) -> None:
    with read_scope(hub.engine) as session:
        require_operator(session, user.account_id)


async def _operated(hub: "Hub", user: ConsoleUser, key: str) -> Mailbox:
    """Mailbox KEY, for the hub's operator only (the mailboxes are the hub's, not an
    account's)."""
    await asyncio.to_thread(_operator, hub, user)
    return find_mailbox(hub.config, key)


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _row(hub: "Hub", mailbox: Mailbox) -> dict[str, Any]:
    state = mailbox_state(hub.state, mailbox.key)
    activity = state.activity
    return {
        "box": mailbox,
        "state": state,
        "problem": oauth_problem(hub.state, mailbox),
        "last_at": _stamp(activity.get("at")),
        "last_what": activity.get("what", ""),
        "error": activity.get("error", ""),
        "error_at": _stamp(activity.get("error_at")),
        "connected_at": _stamp(state.connected_at),
    }


@router.get("/mailboxes", response_class=HTMLResponse)
async def mailboxes(ui: Page) -> Response:
    """Every mailbox of the hub's config, with its sign-in and last activity."""
    await asyncio.to_thread(_operator, ui.hub, ui.user)

    def _load() -> list[dict[str, Any]]:
        return [_row(ui.hub, m) for m in configured_mailboxes(ui.hub.config)]

    rows = await asyncio.to_thread(_load)
    return ui.render("mailboxes_list.html.j2", nav="mailboxes", rows=rows)


@router.get("/mailboxes/view", response_class=HTMLResponse)
async def mailbox_page(ui: Page, key: str = "") -> Response:
    """One mailbox: its settings, sign-in, last activity and error; connect, test, disconnect."""
    config = ui.hub.config
    mailbox = await _operated(ui.hub, ui.user, key)
    row = await asyncio.to_thread(_row, ui.hub, mailbox)
    setup = oauth_flow.setup_hint(config, mailbox.provider, CALLBACK_PATH) if mailbox.oauth else ""
    return ui.render(
        "mailboxes_detail.html.j2",
        nav="mailboxes",
        row=row,
        setup=setup,
        scopes=scopes_for(mailbox.provider, mailbox.transport),
        redirect_uri=oauth_flow.redirect_uri(config, CALLBACK_PATH),
    )


def _view(key: str) -> str:
    return f"/console/mailboxes/view?key={quote(key, safe='')}"


@router.get("/mailboxes/oauth/start")
async def oauth_start(ui: Page, key: str = "") -> Response:
    """Send the browser to the provider's consent page for mailbox KEY."""
    config = ui.hub.config
    mailbox = await _operated(ui.hub, ui.user, key)
    if not mailbox.oauth:
        raise InvalidInput(
            f'mailbox {key} signs in with a password; set auth = "xoauth2" and '
            "oauth_provider in its config to connect it by OAuth"
        )
    hint = oauth_flow.setup_hint(config, mailbox.provider, CALLBACK_PATH)
    if hint:
        raise ConfigError(
            f"Connecting {PROVIDERS[mailbox.provider]} mailboxes is not set up: {hint}"
        )
    data = {"u": ui.user.user_id, "a": ui.user.account_id, "n": mailbox.key}
    started = await asyncio.to_thread(
        oauth_flow.start,
        config,
        _key(ui.hub),
        ui.hub.state,
        mailbox.provider,
        data,
        scopes_for(mailbox.provider, mailbox.transport),
        CALLBACK_PATH,
    )
    return sign_in_redirect(started, OAUTH_COOKIE, OAUTH_PATH, ui.hub.config)


@router.get("/mailboxes/oauth/callback")
async def oauth_callback(ui: Page) -> Response:
    """The provider's answer: trade the code for tokens, kept encrypted with the mailbox."""
    config = ui.hub.config
    await asyncio.to_thread(_operator, ui.hub, ui.user)
    query = dict(ui.request.query_params)
    state = query.get("state", "")
    checked = oauth_flow.read_state(
        _key(ui.hub), state, ui.request.cookies.get(OAUTH_COOKIE, ""), PAGE
    )
    if int(checked["u"]) != ui.user.user_id:
        raise Forbidden("this sign-in was started by another console user; start again")
    checked = await asyncio.to_thread(oauth_flow.take_flow, ui.hub.state, checked, PAGE)
    mailbox = find_mailbox(config, str(checked["n"]))
    provider = str(checked["p"])
    back = _view(mailbox.key)
    if query.get("error"):
        why = query.get("error_description") or query["error"]
        response: Response = redirect(
            back,
            _("%(provider)s did not connect: %(why)s", provider=PROVIDERS[provider], why=why[:300]),
        )
    else:

        def _exchange() -> str:
            token = oauth_flow.exchange_code(config, provider, state, checked, query, CALLBACK_PATH)
            claims = token.get("id_token_claims") or {}
            signed_in = str(claims.get("preferred_username") or claims.get("email") or "")
            store_grant(
                ui.hub.state,
                mailbox.key,
                provider,
                str(token["refresh_token"]),
                account=signed_in or mailbox.username,
                access=token,
                scopes=scopes_for(provider, mailbox.transport),
            )
            return signed_in

        signed_in = await asyncio.to_thread(_exchange)
        names = {"mailbox": mailbox.label, "provider": PROVIDERS[provider]}
        if signed_in and signed_in.lower() != mailbox.username.lower():
            message = _(
                "Mailbox %(mailbox)s connected with %(provider)s, signed in as %(account)s while "
                "the mailbox's username is %(username)s: the server will refuse the token unless "
                "that account may open this mailbox. Test it now.",
                account=signed_in,
                username=mailbox.username,
                **names,
            )
        else:
            message = _("Mailbox %(mailbox)s connected with %(provider)s. Test it now.", **names)
        response = redirect(back, message)
    response.delete_cookie(OAUTH_COOKIE, path=OAUTH_PATH)
    return response


@router.post("/mailboxes/test")
async def test(ui: Page, key: Annotated[str, Form()] = "") -> Response:
    """Read the intake folder, or send a test mail to the mailbox itself."""
    mailbox = await _operated(ui.hub, ui.user, key)
    try:
        said = await asyncio.to_thread(try_mailbox, ui.hub.config, ui.hub.state, mailbox.key)
    except (HubError, OSError) as exc:
        return redirect(_view(mailbox.key), _("Test failed: %(error)s", error=str(exc)))
    return redirect(_view(mailbox.key), _("Test passed: %(result)s.", result=said))


@router.post("/mailboxes/disconnect")
async def remove(ui: Page, key: Annotated[str, Form()] = "") -> Response:
    """Forget the mailbox's tokens (the hub stops signing in to it until connected again)."""
    mailbox = await _operated(ui.hub, ui.user, key)
    await asyncio.to_thread(disconnect, ui.hub.state, mailbox.key)
    return redirect(
        _view(mailbox.key),
        _(
            "Mailbox %(mailbox)s disconnected: its stored tokens are deleted. To withdraw the "
            "consent itself, remove smshub from the account's apps at the provider.",
            mailbox=mailbox.label,
        ),
    )
