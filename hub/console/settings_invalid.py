"""Console page /console/invalid: numbers reported invalid twice in a row (NPAI), left
out of the account's sends until removed here."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.console.actions import changed_page, number_list_page, on_row
from hub.console.campaign_query import own_campaign, parse_id
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import (
    NumberQuery,
    account_region,
    lines_to_import,
    number_list,
)
from hub.core.i18n import gettext as _
from hub.errors import InvalidInput
from hub.sending.invalid_numbers import AddReport, add_campaign_invalid, add_numbers, import_file
from hub.store.models import Account, InvalidNumber
from hub.web.edge import RowId

router = APIRouter()
PATH = "/console/invalid"
TEMPLATE = "settings_invalid.html.j2"
# A pasted list or an uploaded file, at most (the file's rows are bounded by the contact
# reader's own limit too).
MAX_IMPORT_LINES = 10_000
MAX_IMPORT_BYTES = 10 * 1024 * 1024


@router.get("/invalid", response_class=HTMLResponse)
async def invalid_page(ui: Page, search: NumberQuery) -> Response:
    """The account's invalid numbers, searched by number, one page at a time."""
    return await number_list_page(ui, search, InvalidNumber, PATH, TEMPLATE)


@router.post("/invalid/add", response_class=HTMLResponse)
async def invalid_add(
    ui: Page,
    account: Annotated[str, Form()] = "",
    numbers: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Put numbers on the invalid list: typed or pasted (one a line), or a CSV/TXT/XLS/XLSX
    file (numbers in the first column). The lines that are not numbers are shown."""
    data = b""
    name = ""
    if file is not None and file.filename:
        data = await file.read(MAX_IMPORT_BYTES + 1)
        name = file.filename
        if len(data) > MAX_IMPORT_BYTES:
            raise InvalidInput(
                f"{name} is over {MAX_IMPORT_BYTES // (1024 * 1024)} MB; "
                "split it, or use `smshub invalid import`"
            )
    pasted = lines_to_import(numbers, MAX_IMPORT_LINES, "(or import a file)")
    if not data and not any(line.strip() for line in pasted):
        raise InvalidInput("type or paste at least one number (one a line), or choose a file")

    def _add(session: Session, acc: Account) -> dict[str, Any]:
        region = account_region(ui.hub.config, acc)
        report = AddReport()
        if data:
            report = import_file(session, acc, data, name, region)
        if any(line.strip() for line in pasted):
            typed = add_numbers(session, acc, list(enumerate(pasted, 1)), region)
            report.added += typed.added
            report.already += typed.already
            report.rejected += typed.rejected
        # Shown on this page, not flashed: the rejected lines can be many; pasted ones are
        # put back in the text area to be fixed.
        shown: dict[str, Any] = {"report": report, "summary": report.summary()}
        if not data:
            shown["pasted"] = "\n".join(r.input for r in report.rejected)
        return shown

    return await changed_page(
        ui,
        account,
        TEMPLATE,
        _add,
        partial(number_list, InvalidNumber, PATH, ui.hub.config, ui.user),
    )


@router.post("/invalid/from-campaign")
async def invalid_from_campaign(ui: Page, campaign: Annotated[str, Form()] = "") -> Response:
    """Put every number a campaign's sends were reported invalid for on the list of the
    campaign's account (from the campaign report)."""
    campaign_id = parse_id(campaign.strip())

    def _add(session: Session) -> AddReport:
        found = own_campaign(session, ui.user, campaign_id)
        acc = session.get(Account, found.account_id)
        assert acc is not None
        return add_campaign_invalid(session, acc, campaign_id)

    report = await ui.write(_add)
    return redirect(
        f"/console/campaigns/{campaign_id}",
        f"Invalid numbers of this campaign: {report.summary()}",
    )


@router.post("/invalid/{entry_id}/remove")
async def invalid_remove(ui: Page, entry_id: RowId) -> Response:
    """Take a number off the invalid list, so the account's sends reach it again."""

    def _remove(session: Session, row: InvalidNumber, _acc: Account) -> str:
        session.delete(row)
        return row.number

    number, url = await on_row(ui, InvalidNumber, entry_id, "invalid number", PATH, _remove)
    return redirect(
        url,
        _(
            "%(number)s removed from the invalid list; SMS to it will go out again.",
            number=number,
        ),
    )
