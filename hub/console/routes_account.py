"""Console pages: account (balance, ledger, sub-accounts and credit moves, settings)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console import account_credits, account_page
from hub.console.page import Page, PageContext
from hub.console.render import redirect
from hub.core import i18n
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.errors import ConflictError, InsufficientCredits, InvalidInput
from hub.sending import account_settings
from hub.store.db import session_scope
from hub.store.models import Account
from hub.web.edge import row_id_or_none

if TYPE_CHECKING:
    pass

router = APIRouter()

# Refusals shown next to the form that caused them (other errors get the error page).
_FORM_ERRORS: dict[type[Exception], int] = {
    InvalidInput: 422,
    InsufficientCredits: 402,
    ConflictError: 409,
}

Action = Callable[[Session, Config, Account], str]


def _url(name: str, anchor: str = "") -> str:
    return f"/console/account?account={quote(name)}" + (f"#{anchor}" if anchor else "")


def _cursor(value: str | None) -> int | None:
    return row_id_or_none(value)


async def _render(
    ui: PageContext,
    ref: str | None,
    *,
    status: int = 200,
    before: int | None = None,
    after: int | None = None,
    subs_after: str = "",
    errors: dict[str, str] | None = None,
    posted: dict[str, str] | None = None,
) -> Response:
    context = await ui.read(
        lambda s: account_page.load(
            s, ui.hub.config, ui.user, ref, before=before, after=after, subs_after=subs_after
        )
    )
    return ui.render(
        "account.html.j2",
        status=status,
        nav="account",
        errors=errors or {},
        posted=posted or {},
        **context,
    )


@dataclass(frozen=True)
class AccountForm:
    """A form of the account page posted: who posts it, on which account (its hidden
    ``account`` field), and the hub that answers."""

    ui: PageContext
    account: str

    async def act(self, form: str, posted: dict[str, str], action: Action) -> Response:
        """Run ACTION on the account in one transaction; re-show the page with the refusal
        next to FORM (with the POSTED values put back) if any."""
        hub, user = self.ui.hub, self.ui.user

        def _run() -> tuple[str, str]:
            with session_scope(hub.engine) as session:
                # Outside the user's scope: NotFound (404) before anything is read or changed.
                account = user.account(session, self.account or None)
                message = action(session, hub.config, account)
                session.add(account)
                return account.name, message

        try:
            name, message = await asyncio.to_thread(_run)
        except tuple(_FORM_ERRORS) as exc:
            status = next(s for cls, s in _FORM_ERRORS.items() if isinstance(exc, cls))
            return await _render(
                self.ui,
                self.account,
                status=status,
                errors={form: str(exc)},
                posted={"form": form, **posted},
            )
        return redirect(_url(name, form), message)


def _account_form(ui: Page, account: Annotated[str, Form()] = "") -> AccountForm:
    return AccountForm(ui, account)


AccountPost = Annotated[AccountForm, Depends(_account_form)]


@router.get("/account", response_class=HTMLResponse)
async def account_home(
    ui: Page,
    account: Annotated[str, Query()] = "",
    before: Annotated[str, Query()] = "",
    after: Annotated[str, Query()] = "",
    subs_after: Annotated[str, Query()] = "",
) -> Response:
    """Balance, ledger, sub-accounts and settings of one of the user's accounts."""
    return await _render(
        ui,
        account or None,
        before=_cursor(before),
        after=_cursor(after),
        subs_after=subs_after,
    )


@router.post("/account/alert")
async def save_alert(
    post: AccountPost,
    threshold: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    sms: Annotated[str, Form()] = "",
) -> Response:
    """Set or turn off the balance alert."""
    return await post.act(
        "alert",
        {"threshold": threshold, "email": email, "sms": sms},
        lambda s, c, a: account_settings.set_alert(s, c, a, threshold, email, sms),
    )


@router.post("/account/sender")
async def save_sender(post: AccountPost, sender: Annotated[str, Form()] = "") -> Response:
    """Set the default sender (checked like a send)."""
    return await post.act(
        "sender", {"sender": sender}, lambda s, c, a: account_settings.set_sender(c, a, sender)
    )


@router.post("/account/region")
async def save_region(post: AccountPost, region: Annotated[str, Form()] = "") -> Response:
    """Set the country national numbers are read in."""
    return await post.act(
        "region", {"region": region}, lambda s, c, a: account_settings.set_region(c, a, region)
    )


def _saved_language(config: Config, account: Account, language: str) -> str:
    # The CLI says it in English (account_settings); the console in the reader's language.
    account_settings.set_locale(config, account, language)
    chosen = i18n.account_language(account, config)
    return _(
        "%(account)s now writes its mails and SMS texts in %(language)s.",
        account=account.name,
        language=i18n.language_name(chosen),
    )


@router.post("/account/language")
async def save_language(post: AccountPost, language: Annotated[str, Form()] = "") -> Response:
    """Set the language of the mails and SMS texts the hub writes for the account."""
    return await post.act(
        "language", {"language": language}, lambda s, c, a: _saved_language(c, a, language)
    )


@router.post("/account/reply-mailbox")
async def save_reply_mailbox(post: AccountPost, mailbox: Annotated[str, Form()] = "") -> Response:
    """Set where inbound SMS are forwarded by e-mail."""
    return await post.act(
        "mailbox",
        {"mailbox": mailbox},
        lambda s, c, a: account_settings.set_reply_mailbox(a, mailbox),
    )


@router.post("/account/autoreply")
async def save_autoreply(
    post: AccountPost,
    enabled: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    period: Annotated[str, Form()] = "",
) -> Response:
    """Turn the auto-responder on or off, with its text and period."""
    on = enabled in {"on", "1", "true", "yes"}
    return await post.act(
        "autoreply",
        {"enabled": "on" if on else "", "text": text, "period": period},
        lambda s, c, a: account_settings.set_autoreply(c, a, on, text, period),
    )


@router.post("/account/night")
async def save_night(
    post: AccountPost,
    mode: Annotated[str, Form()] = "off",
    start: Annotated[str, Form()] = "",
    end: Annotated[str, Form()] = "",
) -> Response:
    """Night hours for every send: off, hold until morning, or warn."""
    return await post.act(
        "night",
        {"mode": mode, "start": start, "end": end},
        lambda s, c, a: account_settings.set_night(a, mode, start, end),
    )


@router.post("/account/links")
async def save_links(post: AccountPost, enabled: Annotated[str, Form()] = "") -> Response:
    """Turn per-recipient short links (click tracking) on or off by default."""
    on = enabled in {"on", "1", "true", "yes"}
    return await post.act(
        "links",
        {"enabled": "on" if on else ""},
        lambda s, c, a: account_settings.set_track_links(a, on),
    )


@router.post("/account/sub-accounts")
async def create_sub_account(
    post: AccountPost,
    name: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "limited",
    initial: Annotated[str, Form()] = "",
) -> Response:
    """Create a sub-account, optionally with credits moved from its parent."""
    return await post.act(
        "subs",
        {"name": name, "mode": mode, "initial": initial},
        lambda s, c, a: account_credits.create_sub_account(
            s, c, post.ui.user, a, name, mode, initial
        ),
    )


@router.post("/account/transfer")
async def transfer(
    post: AccountPost,
    sub: Annotated[str, Form()] = "",
    direction: Annotated[str, Form()] = "down",
    amount: Annotated[str, Form()] = "",
) -> Response:
    """Move credits between the account and one of its sub-accounts, either way."""
    if direction not in {"down", "up"}:
        raise InvalidInput("Direction: choose to the sub-account or back to the account")

    def _move(session: Session, config: Config, parent: Account) -> str:
        source, target = (parent.name, sub) if direction == "down" else (sub, parent.name)
        return account_credits.move_credits(session, config, post.ui.user, source, target, amount)

    return await post.act("transfer", {"sub": sub, "direction": direction, "amount": amount}, _move)


@router.post("/account/reset")
async def reset(post: AccountPost, sub: Annotated[str, Form()] = "") -> Response:
    """Give a sub-account's whole balance back to its parent."""
    return await post.act(
        "subs", {}, lambda s, c, a: account_credits.reset_sub_account(s, c, post.ui.user, sub)
    )


@router.post("/account/disable")
async def disable(
    post: AccountPost, sub: Annotated[str, Form()] = "", enable: Annotated[str, Form()] = ""
) -> Response:
    """Disable a sub-account, or enable it again."""
    return await post.act(
        "subs",
        {},
        lambda s, c, a: account_credits.set_sub_account_disabled(s, post.ui.user, sub, not enable),
    )
