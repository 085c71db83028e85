"""Console pages: saved SMS templates with merge fields, and each recipient's preview.

Templates are the sandboxed texts of hub.campaigns.templates (``{{ first_name }}``, with the
bounds of hub.core.templating); the preview renders the text for the members of a list as the
send will, with each one's parts and credits, and names a merge field a recipient lacks.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.campaigns import contacts
from hub.campaigns import templates as mt
from hub.console.auth import ConsoleUser
from hub.console.page import Page
from hub.console.render import redirect
from hub.console.settings_common import back_to, layout, owned, scoped_account_id
from hub.core.i18n import gettext as _
from hub.core.phone import split_numbers
from hub.errors import HubError, InvalidInput
from hub.store.models import Account, MessageTemplate
from hub.web.edge import RowId

router = APIRouter()
PATH = "/console/templates"
# Recipients shown one by one in a preview (the totals count every one).
PREVIEW_ROWS = 10
# Numbers typed for a preview: a sample, not a send.
MAX_PREVIEW_NUMBERS = 50


def _context(session: Session, user: ConsoleUser, acc: Account) -> dict[str, Any]:
    assert acc.id is not None
    return {
        **layout(session, user, acc, PATH),
        "templates": [mt.template_view(t) | {"id": t.id} for t in mt.list_templates(session, acc)],
        "lists": contacts.list_summaries(session, acc),
    }


@router.get("/templates", response_class=HTMLResponse)
async def templates_page(ui: Page, account: str = "") -> Response:
    """The account's templates, and the form to write a new one with its preview."""

    def _load(session: Session) -> dict[str, Any]:
        return _context(session, ui.user, ui.user.account(session, account or None))

    ctx = await ui.read(_load)
    return ui.render("templates.html.j2", nav="campaigns", edit=None, **ctx)


@router.post("/templates")
async def template_create(
    ui: Page,
    account: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
) -> Response:
    """Save a new template (its syntax is checked first)."""

    def _create(session: Session) -> int:
        acc = ui.user.account(session, account or None)
        saved = mt.create_template(session, acc, name, text)
        assert saved.id is not None
        return saved.id

    template_id = await ui.write(_create)
    return redirect(
        f"{PATH}/{template_id}", _("Template %(name)s saved.", name=mt.check_template_name(name))
    )


# Declared before /templates/{template_id}, whose id would not read "preview".
@router.post("/templates/preview", response_class=HTMLResponse)
async def template_preview(
    ui: Page,
    account: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    preview_list: Annotated[str, Form()] = "",
    preview_numbers: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "marketing",
    sender: Annotated[str, Form()] = "",
) -> Response:
    """Each recipient's text, parts and credits for the chosen list or numbers (an HTML
    fragment for console.js); a syntax error or a missing merge field is named."""
    account_id = await asyncio.to_thread(scoped_account_id, ui.hub.engine, ui.user, account)

    def _preview(session: Session) -> dict[str, Any]:
        acc = ui.user.account(session, account_id)
        region = acc.default_region or ui.hub.config.hub.default_region
        numbers = split_numbers(preview_numbers, region) if preview_numbers.strip() else []
        if len(numbers) > MAX_PREVIEW_NUMBERS:
            raise InvalidInput(
                f"type at most {MAX_PREVIEW_NUMBERS} numbers for a preview, or choose a list"
            )
        if not text.strip():
            return {"data": None, "fields": []}
        fields = mt.template_fields(text)
        if not preview_list and not numbers:
            return {"data": None, "fields": fields}
        data = mt.preview_personalized(
            session,
            ui.hub.config,
            acc,
            text,
            lists=[preview_list] if preview_list else [],
            numbers=numbers,
            type=type if type in {"alert", "marketing"} else "marketing",
            sender=sender.strip() or None,
        )
        return {"data": data, "fields": fields}

    try:
        ctx = await ui.read(_preview)
    except HubError as exc:
        return ui.render("_recipients_preview.html.j2", status=422, data=None, fields=[],
            error=str(exc), rows=PREVIEW_ROWS, hint=False,
        )  # fmt: skip
    return ui.render("_recipients_preview.html.j2", error="", rows=PREVIEW_ROWS, hint=True,
        **ctx,
    )  # fmt: skip


@router.get("/templates/{template_id}", response_class=HTMLResponse)
async def template_page(ui: Page, template_id: RowId) -> Response:
    """One template: its text to edit, with each recipient's preview."""

    def _load(session: Session) -> dict[str, Any]:
        found = owned(session, MessageTemplate, template_id, ui.user, "template")
        acc = session.get(Account, found.account_id)
        assert acc is not None
        ctx = _context(session, ui.user, acc)
        return {**ctx, "edit": mt.template_view(found) | {"id": found.id}}

    ctx = await ui.read(_load)
    return ui.render("templates.html.j2", nav="campaigns", **ctx)


@router.post("/templates/{template_id}")
async def template_save(
    ui: Page, template_id: RowId, text: Annotated[str, Form()] = ""
) -> Response:
    """Save a template's new text (campaigns already made keep the text they had)."""

    def _save(session: Session) -> str:
        found = owned(session, MessageTemplate, template_id, ui.user, "template")
        mt.create_template(session, found.account_id, found.name, text, replace=True)
        return found.name

    name = await ui.write(_save)
    return redirect(f"{PATH}/{template_id}", _("Template %(name)s saved.", name=name))


@router.post("/templates/{template_id}/delete")
async def template_delete(ui: Page, template_id: RowId) -> Response:
    """Delete a template (campaigns keep their own copy of the text)."""

    def _delete(session: Session) -> tuple[str, str]:
        found = owned(session, MessageTemplate, template_id, ui.user, "template")
        acc = session.get(Account, found.account_id)
        assert acc is not None
        mt.delete_template(session, acc, found.name)
        return found.name, back_to(PATH, ui.user, acc)

    name, url = await ui.write(_delete)
    return redirect(url, _("Template %(name)s deleted.", name=name))
