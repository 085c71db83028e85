"""A console page's database work, in one shape: off the event loop, in one transaction, on
an account or a row the user may see (anything else is NotFound, like a missing one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi.responses import Response
from sqlmodel import Session

from hub.console.page import PageContext
from hub.console.render import redirect
from hub.console.settings_common import NumberSearch, back_to, number_list, owned
from hub.core.i18n import gettext as _
from hub.errors import ConflictError
from hub.store.db import read_scope, session_scope
from hub.store.models import Account

if TYPE_CHECKING:
    from hub.app import Hub

T = TypeVar("T")
Row = TypeVar("Row")
Context = Callable[[Session, Account], dict[str, Any]]


async def on_account(
    ui: PageContext,
    account: str,
    work: Callable[[Session, Account], T],
    *,
    write: bool = True,
) -> T:
    """WORK on ACCOUNT (a name; "": the user's own) in one transaction (read-only unless
    WRITE), in a worker thread."""

    def _run() -> T:
        with (session_scope if write else read_scope)(ui.hub.engine) as session:
            return work(session, ui.user.account(session, account or None))

    return await asyncio.to_thread(_run)


async def on_row(
    ui: PageContext,
    model: type[Row],
    row_id: int,
    what: str,
    path: str,
    work: Callable[[Session, Row, Account], T],
) -> tuple[T, str]:
    """WORK on row ROW_ID of MODEL (a WHAT, for the error) and its account, in one write
    transaction; with the page PATH of that account to go back to."""

    def _run() -> tuple[T, str]:
        with session_scope(ui.hub.engine) as session:
            row = owned(session, model, row_id, ui.user, what)
            acc = session.get(Account, getattr(row, "account_id", None))
            assert acc is not None
            return work(session, row, acc), back_to(path, ui.user, acc)

    return await asyncio.to_thread(_run)


async def changed_page(
    ui: PageContext,
    account: str,
    template: str,
    change: Callable[[Session, Account], dict[str, Any]],
    context: Context,
) -> Response:
    """CHANGE on ACCOUNT committed, then settings page TEMPLATE with its CONTEXT read afresh
    and what CHANGE returned: for what is shown in place rather than flashed after a redirect
    (a secret shown once, the lines an import refused)."""

    def _run() -> dict[str, Any]:
        with session_scope(ui.hub.engine) as session:
            shown = change(session, ui.user.account(session, account or None))
        with read_scope(ui.hub.engine) as session:
            return {**context(session, ui.user.account(session, account or None)), **shown}

    ctx = await asyncio.to_thread(_run)
    return ui.render(template, nav="account", **ctx)


async def number_list_page(
    ui: PageContext,
    search: NumberSearch,
    model: Any,
    path: str,
    template: str,
) -> Response:
    """A settings page listing an account's MODEL numbers (blacklist, invalid numbers), the
    page of them SEARCH asks for."""
    context = partial(number_list, model, path, ui.hub.config, ui.user, search=search)
    return await settings_page(ui, search.account, template, context)


async def settings_page(
    ui: PageContext,
    account: str,
    template: str,
    context: Context,
) -> Response:
    """An account settings page: TEMPLATE with CONTEXT read for ACCOUNT."""
    ctx = await on_account(ui, account, context, write=False)
    return ui.render(template, nav="account", **ctx)


async def cancelled(
    hub: Hub, url: str, cancel: Callable[[Session], T], said: Callable[[T], str]
) -> Response:
    """CANCEL in one write transaction, then back to URL with SAID of what it returned; or
    with why nothing was cancelled (a ConflictError: it has gone out already)."""

    def _run() -> T:
        with session_scope(hub.engine) as session:
            return cancel(session)

    try:
        done = await asyncio.to_thread(_run)
    except ConflictError as exc:
        return redirect(url, _("Not cancelled: %(why)s.", why=exc))
    return redirect(url, said(done))
