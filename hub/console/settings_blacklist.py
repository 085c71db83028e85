"""Console page /console/blacklist: search, add, import and remove (with the consent
reason) the numbers an account never sends to."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console.actions import changed_page, number_list_page, on_account
from hub.console.auth import ConsoleUser
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import (
    NumberQuery,
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

router = APIRouter()
PATH = "/console/blacklist"
TEMPLATE = "settings_blacklist.html.j2"
MAX_IMPORT_LINES = 10_000


@router.get("/blacklist", response_class=HTMLResponse)
async def blacklist_page(ui: Page, search: NumberQuery) -> Response:
    """The account's blacklist, searched by number, one page at a time."""
    return await number_list_page(ui, search, BlacklistEntry, PATH, TEMPLATE)


def _report_text(report: ImportReport) -> str:
    return f"{report.added} added, {report.already} already on the blacklist."


@dataclass(frozen=True)
class BlacklistForm:
    """A blacklist form as posted: one NUMBER (add, remove) or pasted NUMBERS (import), with
    the REASON kept beside them (or, on removal, the consent)."""

    account: str
    number: str
    numbers: str
    reason: str


def _posted(
    account: Annotated[str, Form()] = "",
    number: Annotated[str, Form()] = "",
    numbers: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> BlacklistForm:
    return BlacklistForm(account, number, numbers, reason)


Posted = Annotated[BlacklistForm, Depends(_posted)]


def _add(
    config: Config, user: ConsoleUser, form: BlacklistForm, source: str, lines: list[str]
) -> Callable[[Session, Account], ImportReport]:
    """Blacklisting LINES on the form's account, from SOURCE (manual, import)."""
    said = "added" if source == "manual" else "pasted"

    def _run(session: Session, acc: Account) -> ImportReport:
        assert acc.id is not None
        return add_numbers(
            session,
            acc.id,
            lines,
            source=source,
            note=form.reason.strip() or f"{said} in the console by {user.username}",
            region=account_region(config, acc),
        )

    return _run


@router.post("/blacklist")
async def blacklist_add(ui: Page, form: Posted) -> Response:
    """Blacklist one number by hand, with the reason kept beside it."""
    number = form.number.strip()
    if not number:
        raise InvalidInput("type the number to blacklist")
    add = _add(ui.hub.config, ui.user, form, "manual", [form.number])

    def _one(session: Session, acc: Account) -> tuple[ImportReport, str]:
        report = add(session, acc)
        if report.rejected:
            _line, raw, why = report.rejected[0]
            raise InvalidInput(f"{raw!r} is not a phone number: {why}")
        return report, back_to(PATH, ui.user, acc)

    report, url = await on_account(ui, form.account, _one)
    if report.already:
        return redirect(url, _("%(number)s was already on the blacklist.", number=number))
    return redirect(
        url, _("%(number)s is on the blacklist: nothing will be sent to it.", number=number)
    )


@router.post("/blacklist/import", response_class=HTMLResponse)
async def blacklist_import(ui: Page, form: Posted) -> Response:
    """Blacklist a pasted list, one number a line; lines that are not numbers are listed."""
    pasted = lines_to_import(
        form.numbers, MAX_IMPORT_LINES, "(or use `smshub blacklist import` for a file)"
    )
    if not any(line.strip() for line in pasted):
        raise InvalidInput("paste at least one number, one a line")
    add = _add(ui.hub.config, ui.user, form, "import", pasted)

    def _import(session: Session, acc: Account) -> dict[str, Any]:
        report = add(session, acc)
        # Shown on this page, not flashed: the rejected lines can be many, and they are put
        # back in the text area to be fixed and sent again.
        return {
            "report": report,
            "summary": _report_text(report),
            "pasted": "\n".join(raw for _line, raw, _why in report.rejected or []),
        }

    return await changed_page(
        ui,
        form.account,
        TEMPLATE,
        _import,
        partial(number_list, BlacklistEntry, PATH, ui.hub.config, ui.user),
    )


@router.post("/blacklist/remove")
async def blacklist_remove(ui: Page, form: Posted) -> Response:
    """Take a number off the blacklist; the consent reason is recorded."""

    def _remove(session: Session, acc: Account) -> str:
        assert acc.id is not None
        region = account_region(ui.hub.config, acc)
        remove_number(session, acc.id, form.number, form.reason, region)
        return back_to(PATH, ui.user, acc)

    url = await on_account(ui, form.account, _remove)
    return redirect(
        url,
        _(
            "%(number)s removed from the blacklist; it can receive SMS again.",
            number=form.number.strip(),
        ),
    )
