"""Console page /console/blacklist: search, add, import and remove (with the consent
reason) the numbers an account never sends to."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console.actions import changed_page, on_account, settings_page
from hub.console.auth import ConsoleUser, User
from hub.console.render import redirect
from hub.console.settings_common import (
    NumberSearch,
    account_region,
    back_to,
    lines_to_import,
    number_list,
)
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.sending.optout import ImportReport, add_numbers, remove_number
from hub.store.models import Account, BlacklistEntry
from hub.web.deps import HubDep

router = APIRouter()
PATH = "/console/blacklist"
TEMPLATE = "settings_blacklist.html.j2"
MAX_IMPORT_LINES = 10_000
Search = Annotated[NumberSearch, Depends()]


def _context(
    config: Config,
    user: ConsoleUser,
    session: Session,
    account: Account,
    search: NumberSearch | None = None,
) -> dict[str, Any]:
    ctx = number_list(config, session, user, account, BlacklistEntry, PATH, search)
    return {**ctx, "has_parent": account.parent_id is not None}


@router.get("/blacklist", response_class=HTMLResponse)
async def blacklist_page(request: Request, user: User, hub: HubDep, search: Search) -> Response:
    """The account's blacklist, searched by number, one page at a time."""
    return await settings_page(
        request,
        user,
        hub,
        search.account,
        TEMPLATE,
        partial(_context, hub.config, user, search=search),
    )


def _report_text(report: ImportReport) -> str:
    return f"{report.added} added, {report.already} already on the blacklist."


@router.post("/blacklist")
async def blacklist_add(
    user: User,
    hub: HubDep,
    account: Annotated[str, Form()] = "",
    number: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Blacklist one number by hand, with the reason kept beside it."""
    if not number.strip():
        raise InvalidInput("type the number to blacklist")

    def _add(session: Session, acc: Account) -> tuple[ImportReport, str]:
        assert acc.id is not None
        report = add_numbers(
            session,
            acc.id,
            [number],
            source="manual",
            note=reason.strip() or f"added in the console by {user.username}",
            region=account_region(hub.config, acc),
        )
        if report.rejected:
            _line, raw, why = report.rejected[0]
            raise InvalidInput(f"{raw!r} is not a phone number: {why}")
        return report, back_to(PATH, user, acc)

    report, url = await on_account(hub, user, account, _add)
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
    hub: HubDep,
    account: Annotated[str, Form()] = "",
    numbers: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Blacklist a pasted list, one number a line; lines that are not numbers are listed."""
    pasted = lines_to_import(
        numbers, MAX_IMPORT_LINES, "(or use `smshub blacklist import` for a file)"
    )
    if not any(line.strip() for line in pasted):
        raise InvalidInput("paste at least one number, one a line")

    def _import(session: Session, acc: Account) -> dict[str, Any]:
        assert acc.id is not None
        report = add_numbers(
            session,
            acc.id,
            pasted,
            source="import",
            note=reason.strip() or f"pasted in the console by {user.username}",
            region=account_region(hub.config, acc),
        )
        # Shown on this page, not flashed: the rejected lines can be many, and they are put
        # back in the text area to be fixed and sent again.
        return {
            "report": report,
            "summary": _report_text(report),
            "pasted": "\n".join(raw for _line, raw, _why in report.rejected or []),
        }

    return await changed_page(
        request, user, hub, account, TEMPLATE, _import, partial(_context, hub.config, user)
    )


@router.post("/blacklist/remove")
async def blacklist_remove(
    user: User,
    hub: HubDep,
    account: Annotated[str, Form()] = "",
    number: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Take a number off the blacklist; the consent reason is recorded."""

    def _remove(session: Session, acc: Account) -> str:
        assert acc.id is not None
        remove_number(session, acc.id, number, reason, account_region(hub.config, acc))
        return back_to(PATH, user, acc)

    url = await on_account(hub, user, account, _remove)
    return redirect(
        url,
        _(
            "%(number)s removed from the blacklist; it can receive SMS again.",
            number=number.strip(),
        ),
    )
