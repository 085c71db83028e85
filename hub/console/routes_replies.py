"""Console pages: replies (conversations per number, the thread, and answering it by SMS)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
import secrets
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console import replies_data as data
from hub.console.forms import optional_row_id
from hub.console.page import Page
from hub.console.render import redirect
from hub.core.i18n import gettext as _
from hub.core.i18n import ngettext
from hub.core.phone import format_international
from hub.errors import InvalidInput, NotFound
from hub.sending import submit as sending
from hub.store.db import read_scope
from hub.web.edge import MAX_ROW_ID

router = APIRouter()


def _time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("before must be a time such as 2026-01-31T10:00:00+00:00") from exc


def _url(path: str, **query: Any) -> str:
    kept = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(kept) if kept else "")


@router.get("/replies", response_class=HTMLResponse)
async def replies(ui: Page, account: str = "", before: str = "") -> Response:
    """Conversations with the numbers that wrote to the user's accounts, latest first."""
    cursor = optional_row_id(before, f"before must be a number from 1 to {MAX_ROW_ID}")
    size = ui.hub.config.console.page_size

    def _load(session: Session) -> dict[str, Any]:
        scope = [ui.user.account(session, account).id or 0] if account else list(ui.user.scope)
        rows, next_cursor = data.conversations(session, scope, cursor, size)
        return {
            "conversations": rows,
            "accounts": [a.name for a in ui.user.accounts(session)],
            "chosen": account,
            "next_url": _url("/console/replies", account=account, before=next_cursor)
            if next_cursor
            else None,
            "first_url": _url("/console/replies", account=account) if cursor else None,
        }

    return ui.render("replies_list.html.j2", nav="replies", **await ui.read(_load))


@router.get("/replies/{digits}", response_class=HTMLResponse)
async def conversation(ui: Page, digits: str, account: str = "", before: str = "") -> Response:
    """The SMS to and from one number on one account, and the form to answer it."""
    number = data.number_from_digits(digits)
    older_than = _time(before)

    def _load(session: Session) -> dict[str, Any]:
        if account:
            acc = ui.user.account(session, account)
        else:
            acc = ui.user.account(session, data.default_account(session, ui.user.scope, number))
        assert acc.id is not None
        items, older = data.thread(
            session, acc.id, number, older_than, ui.hub.config.console.page_size
        )
        if not items and older_than is None:
            raise NotFound(f"no conversation with {number} on account {acc.name}")
        talked = data.thread_accounts(session, ui.user.scope, number)
        others = [ui.user.account(session, a).name for a in talked if a != acc.id]
        return {
            "number": number,
            "digits": data.url_key(number),
            # A name or short code cannot receive an SMS: nothing to answer it with.
            "answerable": number.startswith("+"),
            "account": acc,
            "items": items,
            "others": others,
            "can_answer": acc.id in talked,
            "nonce": secrets.token_urlsafe(12),
            "older_url": _url(
                f"/console/replies/{data.url_key(number)}",
                account=acc.name,
                before=older.isoformat(),
            )
            if older
            else None,
            "newest_url": _url(f"/console/replies/{data.url_key(number)}", account=acc.name)
            if older_than
            else None,
        }

    return ui.render("replies_thread.html.j2", nav="replies", **await ui.read(_load))


@router.post("/replies/{digits}")
async def answer(
    ui: Page,
    digits: str,
    text: Annotated[str, Form()] = "",
    account: Annotated[str, Form()] = "",
    nonce: Annotated[str, Form()] = "",
) -> Response:
    """Send the answer as an SMS, as an e-mail answer to the forwarded SMS would."""
    number = data.number_from_digits(digits)
    # The form's nonce makes a double click (or a resent form) send once.
    key = nonce if nonce and len(nonce) <= 64 else secrets.token_urlsafe(12)

    def _send() -> tuple[str, sending.SubmitResult]:
        with read_scope(ui.hub.engine) as session:
            if account:
                acc = ui.user.account(session, account)
            else:
                acc = ui.user.account(session, data.default_account(session, ui.user.scope, number))
            request_ = data.answer(session, acc, number, text, key)
        return acc.name, ui.hub.submit(request_)

    name, result = await asyncio.to_thread(_send)
    back = _url(f"/console/replies/{data.url_key(number)}", account=name)
    shown = format_international(number)
    outcome = result.recipients[0] if result.recipients else None
    if outcome is None or outcome.status == "rejected":
        reason = outcome.reason if outcome is not None else "refused"
        return redirect(
            back, _("Answer not sent to %(number)s: %(why)s.", number=shown, why=reason)
        )
    if outcome.status == "duplicate":
        return redirect(
            back,
            _("This answer to %(number)s was already sent; it was not sent again.", number=shown),
        )
    # English keeps "credits" for one too, as the hub always wrote it.
    message = ngettext(
        "Answer queued to %(number)s (%(num)s credits).",
        "Answer queued to %(number)s (%(num)s credits).",
        result.credits_charged,
        number=shown,
    )
    if result.warnings:
        message += " " + " ".join(result.warnings)
    return redirect(back, message)
