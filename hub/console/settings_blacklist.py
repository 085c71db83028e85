"""Console page /console/blacklist: search, add, import and remove (with the consent
reason) the numbers an account never sends to."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console.auth import ConsoleUser, User
from hub.console.render import page, redirect
from hub.console.settings_common import (
    account_region,
    back_to,
    number_list,
)
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.sending.optout import ImportReport, add_numbers, remove_number
from hub.store.db import read_scope, session_scope
from hub.store.models import Account, BlacklistEntry

router = APIRouter()
PATH = "/console/blacklist"
MAX_IMPORT_LINES = 10_000


def _context(
    request: Request,
    session: Session,
    user: ConsoleUser,
    account: Account,
    q: str = "",
    after: str = "",
    before: str = "",
) -> dict[str, Any]:
    ctx = number_list(
        request, session, user, account, BlacklistEntry, PATH, q=q, after=after, before=before
    )
    return {**ctx, "has_parent": account.parent_id is not None}


@router.get("/blacklist", response_class=HTMLResponse)
async def blacklist_page(
    request: Request,
    user: User,
    account: str = "",
    q: str = "",
    after: str = "",
    before: str = "",
) -> Response:
    """The account's blacklist, searched by number, one page at a time."""
    hub = request.app.state.hub

    def _load() -> dict[str, Any]:
        with read_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            return _context(request, session, user, acc, q, after, before)

    ctx = await asyncio.to_thread(_load)
    return page(request, user, "settings_blacklist.html.j2", nav="account", **ctx)


def _report_text(report: ImportReport) -> str:
    return f"{report.added} added, {report.already} already on the blacklist."


@router.post("/blacklist")
async def blacklist_add(
    request: Request,
    user: User,
    account: Annotated[str, Form()] = "",
    number: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Blacklist one number by hand, with the reason kept beside it."""
    hub = request.app.state.hub
    if not number.strip():
        raise InvalidInput("type the number to blacklist")

    def _add() -> tuple[ImportReport, str]:
        with session_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            assert acc.id is not None
            report = add_numbers(
                session,
                acc.id,
                [number],
                source="manual",
                note=reason.strip() or f"added in the console by {user.username}",
                region=account_region(request, acc),
            )
            if report.rejected:
                _line, raw, why = report.rejected[0]
                raise InvalidInput(f"{raw!r} is not a phone number: {why}")
            return report, back_to(PATH, user, acc)

    report, url = await asyncio.to_thread(_add)
    if report.already:
        return redirect(url, _("%(number)s was already on the blacklist.", number=number.strip()))
    return redirect(
        url,
        _("%(number)s is on the blacklist: nothing will be sent to it.", number=number.strip()),
    )


@router.post("/blacklist/import", response_class=HTMLResponse)
async def blacklist_import(
    request: Request,
    user: User,
    account: Annotated[str, Form()] = "",
    numbers: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Blacklist a pasted list, one number a line; lines that are not numbers are listed."""
    hub = request.app.state.hub
    pasted = numbers.splitlines()
    if len(pasted) > MAX_IMPORT_LINES:
        raise InvalidInput(
            f"paste at most {MAX_IMPORT_LINES} lines at a time "
            "(or use `smshub blacklist import` for a file)"
        )
    if not any(line.strip() for line in pasted):
        raise InvalidInput("paste at least one number, one a line")

    def _import() -> dict[str, Any]:
        with session_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            assert acc.id is not None
            report = add_numbers(
                session,
                acc.id,
                pasted,
                source="import",
                note=reason.strip() or f"pasted in the console by {user.username}",
                region=account_region(request, acc),
            )
        with read_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            ctx = _context(request, session, user, acc)
        return {**ctx, "report": report, "summary": _report_text(report)}

    ctx = await asyncio.to_thread(_import)
    # Shown on this page, not flashed: the rejected lines can be many, and they are put back
    # in the text area to be fixed and sent again.
    ctx["pasted"] = "\n".join(raw for _line, raw, _why in ctx["report"].rejected or [])
    return page(request, user, "settings_blacklist.html.j2", nav="account", **ctx)


@router.post("/blacklist/remove")
async def blacklist_remove(
    request: Request,
    user: User,
    account: Annotated[str, Form()] = "",
    number: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Take a number off the blacklist; the consent reason is recorded."""
    hub = request.app.state.hub

    def _remove() -> str:
        with session_scope(hub.engine) as session:
            acc = user.account(session, account or None)
            assert acc.id is not None
            remove_number(session, acc.id, number, reason, account_region(request, acc))
            return back_to(PATH, user, acc)

    url = await asyncio.to_thread(_remove)
    return redirect(
        url,
        _(
            "%(number)s removed from the blacklist; it can receive SMS again.",
            number=number.strip(),
        ),
    )
