"""/v1/templates: saved SMS texts with merge fields, and their per-recipient preview.

The same templates as `smshub templates` and the console (hub.campaigns.templates): a
sandboxed Jinja2 text whose ``{{ first_name }}`` ... are the recipient's list columns. The
preview renders it for each recipient with the opt-out mention the send would add, and
counts parts and credits exactly as the send will charge them.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from hub.api.auth import AccountQuery, CallerDep
from hub.api.errors import error_responses
from hub.api.support import (
    ChangeDep,
    LimitDep,
    check_count,
    in_session,
    next_cursor,
)
from hub.campaigns import templates as mt
from hub.errors import InvalidInput
from hub.store.models import Account, MessageTemplate
from hub.web.deps import HubDep
from hub.web.edge import Text

if TYPE_CHECKING:
    from hub.app import Hub

TAG = "templates"
router = APIRouter(prefix="/v1/templates", tags=[TAG])
_EXAMPLE = "Bonjour {{ first_name }}, votre commande {{ order }} est prête."


class Template(BaseModel):
    name: str = Field(examples=["ready"])
    text: str = Field(examples=[_EXAMPLE])
    fields: list[str] = Field(description="The merge fields the text uses", examples=[["order"]])
    created_at: str


class TemplatePage(BaseModel):
    """One page of templates, by name; pass ``next`` as ``after``."""

    templates: list[Template]
    next: str | None = None


class NewTemplate(BaseModel):
    name: Text = Field(description="1-64 letters, digits, '.', '_' or '-'", examples=["ready"])
    text: Text = Field(description="At most 2000 characters", examples=[_EXAMPLE])


class TemplateText(BaseModel):
    text: Text = Field(examples=[_EXAMPLE])


class PreviewBody(BaseModel):
    numbers: list[Text] = Field(
        default_factory=list,
        description="Recipients by number (no merge fields but {{ number }})",
        examples=[["06 12 34 56 78"]],
    )
    lists: list[Text] = Field(
        default_factory=list, description="Recipients: the members of these lists"
    )
    type: Literal["alert", "marketing"] = "alert"
    sender: Text | None = Field(None, description="The sender the send will use")


class PreviewRecipient(BaseModel):
    number: str | None
    input: str
    source: str = Field(examples=["list:patients"])
    text: str | None = Field(description="The exact text sent, opt-out mention included")
    segments: int
    encoding: str | None
    credits: int
    error: str | None = Field(description="Why this recipient would be left out")


class PreviewTotals(BaseModel):
    recipients: int
    left_out: int
    segments: int
    max_segments: int
    credits: int
    balance: int
    enough_credits: bool
    fields: list[str]


class Preview(BaseModel):
    """Each recipient's text, parts, encoding and credits; nothing is sent."""

    recipients: list[PreviewRecipient]
    totals: PreviewTotals


def preview_body(hub: "Hub", body: PreviewBody) -> None:
    """The checks every preview request gets: recipients given, and not too many numbers."""
    if not body.numbers and not body.lists:
        raise InvalidInput("name the recipients: `numbers`, `lists` or both")
    check_count(hub, body.numbers, "numbers")
    check_count(hub, body.lists, "lists")


def _shown(template: MessageTemplate) -> Template:
    return Template(**mt.template_view(template))


@router.get("", summary="List templates", responses=error_responses(404))
async def get_templates(
    who: CallerDep, hub: HubDep, limit: LimitDep, account: AccountQuery = None, after: str = ""
) -> TemplatePage:
    """The account's templates, by name."""

    def _run(session: Session, acc: Account) -> TemplatePage:
        rows = mt.list_templates(session, acc, after=after, limit=limit)
        return TemplatePage(
            templates=[_shown(t) for t in rows],
            next=next_cursor(rows, limit, lambda r: r.name),
        )

    return await in_session(hub, who.on_account(account, _run))


@router.post(
    "",
    status_code=201,
    summary="Save a template",
    response_model=Template,
    responses=error_responses(404, 409),
)
async def create_template(
    body: NewTemplate, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """A new template (its syntax is checked); 409 if the name is taken (PUT replaces)."""

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        return mt.template_view(mt.create_template(session, acc, body.name, body.text))

    work = change.who.on_account(account, _run)
    return await change.answer(body, 201, work)


@router.get("/{name}", summary="One template", responses=error_responses(404))
async def get_template(
    name: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Template:
    """A template's text and merge fields."""
    return await in_session(
        hub, who.on_account(account, lambda s, acc: _shown(mt.get_template(s, acc, name)))
    )


@router.put("/{name}", summary="Create or replace a template", responses=error_responses(404))
async def put_template(
    name: str, body: TemplateText, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Template:
    """Save TEXT under NAME, replacing the template of that name if there is one
    (campaigns keep the text they were sent with)."""

    def _run(session: Session, acc: Account) -> Template:
        return _shown(mt.create_template(session, acc, name, body.text, replace=True))

    return await in_session(hub, who.on_account(account, _run))


@router.delete("/{name}", summary="Delete a template", responses=error_responses(404))
async def delete_template(
    name: str, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Template:
    """Delete a template; answers it as it was."""

    def _run(session: Session, acc: Account) -> Template:
        gone = _shown(mt.get_template(session, acc, name))
        mt.delete_template(session, acc, name)
        return gone

    return await in_session(hub, who.on_account(account, _run))


@router.post(
    "/{name}/preview",
    summary="Render a template for recipients",
    responses=error_responses(404, 413),
)
async def preview_template(
    name: str, body: PreviewBody, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Preview:
    """The template rendered for each recipient (their list's merge fields), with its
    parts, encoding and credits, and who would be left out and why; sends nothing."""
    preview_body(hub, body)

    def _run(session: Session, acc: Account) -> Preview:
        data = mt.preview_personalized(
            session,
            hub.config,
            acc,
            mt.get_template(session, acc, name),
            lists=body.lists,
            numbers=body.numbers,
            type=body.type,
            sender=body.sender,
        )
        return Preview(**data)

    return await in_session(hub, who.on_account(account, _run))
