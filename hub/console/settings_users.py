"""Account users on /console/intake: the logins for the console and SMTP AUTH (add,
disable or enable, change a password)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import Response
from sqlmodel import Session

from hub.console.actions import on_account, on_row
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import back_to, owned
from hub.core.i18n import gettext as _
from hub.errors import ConflictError, InvalidInput
from hub.mail.intake.addresses import add_mail_user
from hub.mail.intake.passwords import hash_password, verify_password
from hub.store.models import Account, MailUser
from hub.web.edge import RowId

router = APIRouter()
PATH = "/console/intake"
MIN_PASSWORD = 10


def _new_password(password: str, again: str) -> str:
    if password != again:
        raise InvalidInput("the two passwords differ; type the same password twice")
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"the password must have at least {MIN_PASSWORD} characters")
    return password


def _username(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255 or any(c.isspace() for c in name):
        raise InvalidInput("the user name must be 1-255 characters without spaces")
    return name


@router.post("/intake/users")
async def user_add(
    ui: Page,
    account: Annotated[str, Form()] = "",
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    password2: Annotated[str, Form()] = "",
) -> Response:
    """Create a login for the account (console and SMTP AUTH)."""
    name = _username(username)
    secret = _new_password(password, password2)

    def _add(session: Session, acc: Account) -> str:
        assert acc.id is not None
        add_mail_user(session, acc.id, name, secret)
        return back_to(PATH, ui.user, acc)

    url = await on_account(ui, account, _add)
    return redirect(
        url,
        _("User %(name)s created: it can log in here and send mail by SMTP AUTH.", name=name),
    )


@router.post("/intake/users/{user_id}/disable")
async def user_disable(
    ui: Page, user_id: RowId, disabled: Annotated[bool, Form()] = True
) -> Response:
    """Disable (or, with disabled=0, enable) a login; its sessions end at once."""
    if disabled and user_id == ui.user.user_id:
        raise ConflictError("you cannot disable your own login; another user of the account can")

    def _set(session: Session, row: MailUser, _acc: Account) -> str:
        if disabled and not row.disabled:
            row.session_epoch += 1
        row.disabled = disabled
        session.add(row)
        return row.username

    name, url = await on_row(ui, MailUser, user_id, "user", PATH, _set)
    return redirect(
        url,
        _("User %(name)s disabled.", name=name)
        if disabled
        else _("User %(name)s enabled.", name=name),
    )


@router.post("/intake/users/{user_id}/password")
async def user_password(
    ui: Page,
    user_id: RowId,
    password: Annotated[str, Form()] = "",
    password2: Annotated[str, Form()] = "",
    current: Annotated[str, Form()] = "",
) -> Response:
    """Set a user's password; one's own needs the current one, and ends one's sessions."""
    secret = _new_password(password, password2)
    own = user_id == ui.user.user_id

    def _check_current(session: Session) -> None:
        row = owned(session, MailUser, user_id, ui.user, "user")
        if own and not verify_password(current, row.password_hash):
            raise InvalidInput("your current password is wrong; type it again")

    # scrypt is slow on purpose: hash outside the write transaction.
    await ui.read(_check_current)
    new_hash = await asyncio.to_thread(hash_password, secret)

    def _set(session: Session, row: MailUser, _acc: Account) -> str:
        row.password_hash = new_hash
        session.add(row)
        return row.username

    name, url = await on_row(ui, MailUser, user_id, "user", PATH, _set)
    if own:
        return redirect("/console/login", _("Password changed. Log in with the new one."))
    return redirect(
        url, _("Password of %(name)s changed; its open sessions have ended.", name=name)
    )
