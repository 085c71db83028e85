"""Console pages: contact lists (import with preview and rejection report, edit, delete).

The import reads files exactly as `smshub contacts import` does (hub.campaigns.contacts): the same
formats, the same per-line rejection report, the same preview. The preview is asked for
while the file is still chosen in the form (console.js posts the form to
/lists/import/preview and shows the fragment), so "Import" sends the same file again.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.campaigns import contacts
from hub.console.actions import on_row
from hub.console.auth import ConsoleUser
from hub.console.forms import read_upload
from hub.console.page import Page
from hub.console.render import csv_download, redirect
from hub.console.settings_common import (
    account_region,
    back_to,
    layout,
    owned,
    page_url,
    scoped_account_id,
)
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.errors import HubError, InvalidInput
from hub.store.db import read_scope, session_scope
from hub.store.models import Account, ContactList
from hub.web.edge import RowId, row_id_or_none

if TYPE_CHECKING:
    from hub.app import Hub

router = APIRouter()
PATH = "/console/lists"
# Contacts added or edited by hand: one number and a few fields, not an import.
MAX_FIELDS = 50


def _lists_context(
    config: Config, session: Session, user: ConsoleUser, acc: Account
) -> dict[str, Any]:
    return {
        **layout(session, user, acc, PATH),
        "lists": contacts.list_summaries(session, acc),
        "report": None,
        "list_name": "",
        "list_url": "",
        "error": "",
        "max_size": config.contacts.max_import_size,
    }


@router.get("/lists", response_class=HTMLResponse)
async def lists_page(ui: Page, account: str = "") -> Response:
    """The account's contact lists with their sizes, and the import form."""

    def _load(session: Session) -> dict[str, Any]:
        return _lists_context(
            ui.hub.config, session, ui.user, ui.user.account(session, account or None)
        )

    ctx = await ui.read(_load)
    return ui.render("lists.html.j2", nav="campaigns", **ctx)


async def _run_import(
    hub: "Hub",
    user: ConsoleUser,
    account: str,
    list_name: str,
    file: UploadFile | None,
    preview: bool,
) -> tuple[contacts.ImportReport, Account]:
    """Read the uploaded file within the limits and import it (or only preview it)."""
    limits = hub.config.contacts
    account_id = await asyncio.to_thread(scoped_account_id, hub.engine, user, account)
    if not list_name.strip():
        raise InvalidInput("name the list to import into (a new name creates the list)")
    contacts.check_list_name(list_name)
    name, data = await read_upload(file, limits.max_import_size, "contacts.max_import_size")
    if not data:
        raise InvalidInput("choose a file to import (CSV, TXT, XLS or XLSX)")

    def _import() -> tuple[contacts.ImportReport, Account]:
        scope = read_scope if preview else session_scope
        with scope(hub.engine) as session:
            acc = user.account(session, account_id)
            report = contacts.import_contacts(
                session,
                acc,
                list_name,
                data,
                name,
                preview=preview,
                region=account_region(hub.config, acc),
                max_rows=limits.max_import_rows,
            )
            return report, acc

    return await asyncio.to_thread(_import)


@router.post("/lists/import/preview", response_class=HTMLResponse)
async def import_preview(
    ui: Page,
    account: Annotated[str, Form()] = "",
    list_name: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """What importing the chosen file would do (an HTML fragment for console.js)."""
    await asyncio.to_thread(scoped_account_id, ui.hub.engine, ui.user, account)
    if file is None or not file.filename:
        return ui.render("_import_report.html.j2", report=None, error="", list_url="")
    try:
        report, _acc = await _run_import(ui.hub, ui.user, account, list_name, file, True)
    except HubError as exc:
        return ui.render("_import_report.html.j2", status=422, report=None, error=str(exc),
            list_url="",
        )  # fmt: skip
    return ui.render("_import_report.html.j2", report=report, error="", list_url="")


@router.post("/lists/import", response_class=HTMLResponse)
async def import_file(
    ui: Page,
    account: Annotated[str, Form()] = "",
    list_name: Annotated[str, Form()] = "",
    preview: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Import a contact file into a list (created if needed), or only preview it; the page
    shows the report: counts, merge fields, the first contacts, every line left out."""
    report, acc = await _run_import(ui.hub, ui.user, account, list_name, file, bool(preview))

    def _load() -> dict[str, Any]:
        with read_scope(ui.hub.engine) as session:
            fresh = ui.user.account(session, acc.id)
            ctx = _lists_context(ui.hub.config, session, ui.user, fresh)
            found = (
                None
                if report.preview
                else contacts.find_list(session, acc.id or 0, report.list_name)
            )
            list_url = back_to(f"{PATH}/{found.id}", ui.user, fresh) if found else ""
        return {**ctx, "report": report, "list_name": report.list_name, "list_url": list_url}

    ctx = await asyncio.to_thread(_load)
    return ui.render("lists.html.j2", nav="campaigns", **ctx)


# -- one list ---------------------------------------------------------------------------------
def _list_context(
    config: Config, session: Session, user: ConsoleUser, found: ContactList, after: int
) -> dict[str, Any]:
    acc = session.get(Account, found.account_id)
    assert acc is not None
    rows, next_after = contacts.contacts_page(
        session, found, after=after, size=config.console.page_size
    )
    members = [(c, contacts.contact_fields(c)) for c in rows]
    here = f"{PATH}/{found.id}"
    return {
        **layout(session, user, acc, PATH),
        "contact_list": found,
        "size": contacts.list_size(session, found),
        "members": members,
        "fields": contacts.field_names((c.number, f) for c, f in members),
        "next_url": next_after and page_url(here, after=next_after),
        "first_url": here if after else None,
    }


@router.get("/lists/{list_id}.csv")
async def list_csv(ui: Page, list_id: RowId) -> Response:
    """The list as CSV: number, then one column per merge field (imports back as is)."""

    def _export(session: Session) -> tuple[str, bytes]:
        found = owned(session, ContactList, list_id, ui.user, "contact list")
        return found.name, contacts.export_list(session, found.account_id, found.name)

    name, body = await ui.read(_export)
    return csv_download(body, f"list-{name}.csv")


@router.get("/lists/{list_id}", response_class=HTMLResponse)
async def list_page(ui: Page, list_id: RowId, after: str = "") -> Response:
    """A list's contacts with their merge fields, one page at a time; add, edit, delete."""
    start = row_id_or_none(after) or 0

    def _load(session: Session) -> dict[str, Any]:
        found = owned(session, ContactList, list_id, ui.user, "contact list")
        return _list_context(ui.hub.config, session, ui.user, found, start)

    ctx = await ui.read(_load)
    return ui.render("list_detail.html.j2", nav="campaigns", **ctx)


async def _posted_fields(request: Request) -> dict[str, str]:
    """The merge fields of a contact form: ``field:NAME`` inputs (an empty value removes
    the field), plus one ``new_field``/``new_value`` pair."""
    form = await request.form()
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if key.startswith("field:") and isinstance(value, str) and value.strip():
            fields[key.removeprefix("field:")] = value
    new_name = form.get("new_field")
    new_value = form.get("new_value")
    if isinstance(new_name, str) and new_name.strip():
        fields[new_name.strip()] = new_value if isinstance(new_value, str) else ""
    if len(fields) > MAX_FIELDS:
        raise InvalidInput(f"a contact has at most {MAX_FIELDS} merge fields")
    return fields


@router.post("/lists/{list_id}/add")
async def contact_add(ui: Page, list_id: RowId, number: Annotated[str, Form()] = "") -> Response:
    """Add one number, with its merge fields, to the list."""
    fields = await _posted_fields(ui.request)

    def _add(session: Session, found: ContactList, acc: Account) -> contacts.ImportReport:
        report = contacts.add_numbers(
            session,
            acc,
            found.name,
            [number],
            region=account_region(ui.hub.config, acc),
            fields=fields,
        )
        if report.rejected:
            raise InvalidInput(
                _(
                    "%(number)s cannot be added: %(reason)s",
                    number=repr(number),
                    reason=report.rejected[0].reason,
                )
            )
        return report

    report, _back = await on_row(ui, ContactList, list_id, "contact list", PATH, _add)
    url = f"{PATH}/{list_id}"
    if report.added:
        return redirect(url, _("%(number)s added to the list.", number=number.strip()))
    return redirect(
        url,
        _("%(number)s was already on the list; its fields were merged.", number=number.strip()),
    )


@router.post("/lists/{list_id}/contacts/{contact_id}")
async def contact_edit(
    ui: Page,
    list_id: RowId,
    contact_id: RowId,
    number: Annotated[str, Form()] = "",
) -> Response:
    """Change a contact's number and merge fields."""
    fields = await _posted_fields(ui.request)

    def _edit(session: Session, found: ContactList, acc: Account) -> str:
        return contacts.update_contact(
            session,
            found,
            contact_id,
            number=number,
            fields=fields,
            region=account_region(ui.hub.config, acc),
        ).number

    saved, _back = await on_row(ui, ContactList, list_id, "contact list", PATH, _edit)
    url = f"{PATH}/{list_id}"
    return redirect(url, _("Contact %(number)s saved.", number=saved))


@router.post("/lists/{list_id}/contacts/{contact_id}/delete")
async def contact_delete(ui: Page, list_id: RowId, contact_id: RowId) -> Response:
    """Take a contact off the list (messages already sent to it are kept)."""

    def _delete(session: Session, found: ContactList, _acc: Account) -> str:
        return contacts.delete_contact(session, found, contact_id)

    gone, _back = await on_row(ui, ContactList, list_id, "contact list", PATH, _delete)
    url = f"{PATH}/{list_id}"
    return redirect(url, _("%(number)s removed from the list.", number=gone))


@router.post("/lists/{list_id}/delete")
async def list_delete(ui: Page, list_id: RowId) -> Response:
    """Delete a list and its contacts (campaigns already sent keep their messages)."""

    def _delete(session: Session, found: ContactList, acc: Account) -> tuple[str, int]:
        return found.name, contacts.delete_list(session, acc, found.name)

    (name, count), url = await on_row(ui, ContactList, list_id, "contact list", PATH, _delete)
    return redirect(
        url, _("List %(name)s deleted with its %(num)s contact(s).", name=name, num=count)
    )
