"""Console page /console/campaigns/new: a campaign from the browser, as `smshub campaigns
create` makes it (hub.campaigns.campaigns: one submit path for every door).

Recipients are lists and pasted numbers; the text is written or a saved template; sender,
marketing or alert, a send time, short links on or off and one file (hosted, its short
link added to the text). The cost and parts preview is asked for while the form is filled
(console.js posts the whole form, file included, to /campaigns/new/preview), and "Send a
test SMS" sends the text once, free, to the account's own number.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.campaigns import campaigns, contacts, links
from hub.campaigns import templates as mt
from hub.console.actions import on_account
from hub.console.auth import ConsoleUser
from hub.console.forms import checked, local_time, read_upload
from hub.console.page import Page, PageContext
from hub.console.render import redirect
from hub.console.settings_common import account_region, layout, scoped_account_id
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.phone import split_numbers
from hub.errors import HubError, InvalidInput
from hub.store.models import Account

if TYPE_CHECKING:
    pass

T = TypeVar("T")
# The keyword arguments of the campaign functions for a form, checked when first asked for.
Arguments = Callable[[], dict[str, Any]]
router = APIRouter()
PATH = "/console/campaigns/new"
# Recipients shown one by one in the preview (the totals count every one).
PREVIEW_ROWS = 10


@dataclass
class CampaignForm:
    """The values of the campaign form, as posted (put back in the form on a re-display)."""

    account: str = ""
    name: str = ""
    lists: list[str] = field(default_factory=list)
    numbers: str = ""
    template: str = ""
    text: str = ""
    sender: str = ""
    type: str = "marketing"
    send_at: str = ""
    tz: str = ""
    shorten_links: bool = False
    file_name: str = ""
    # The file chosen, read (within links.max_file_size) only by what uses it.
    upload: UploadFile | None = field(default=None, repr=False)


def _posted_form(
    account: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    lists: Annotated[list[str] | None, Form(alias="list")] = None,
    numbers: Annotated[str, Form()] = "",
    template: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    sender: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "marketing",
    send_at: Annotated[str, Form()] = "",
    tz: Annotated[str, Form()] = "",
    shorten_links: Annotated[str, Form()] = "",
    file: Annotated[UploadFile | None, File()] = None,
) -> CampaignForm:
    return CampaignForm(
        account=account,
        name=name,
        lists=[x for x in (lists or []) if x],
        numbers=numbers,
        template=template,
        text=text,
        sender=sender,
        type=type,
        send_at=send_at,
        tz=tz,
        shorten_links=checked(shorten_links),
        file_name=(file.filename or "") if file is not None else "",
        upload=file,
    )


# The campaign form as posted (the preview and the create buttons post the same fields).
PostedCampaign = Annotated[CampaignForm, Depends(_posted_form)]


def _arguments(form: CampaignForm, region: str, attachment: tuple[str, bytes]) -> dict[str, Any]:
    """The keyword arguments of hub.campaigns.campaigns' preview, create and test for FORM."""
    if form.type not in {"alert", "marketing"}:
        raise InvalidInput("the type is marketing or alert")
    if form.template and form.text.strip():
        raise InvalidInput("choose a saved template or write a text, not both")
    name, data = attachment
    return {
        "text": None if form.template else form.text,
        "template": form.template or None,
        "lists": form.lists,
        "numbers": split_numbers(form.numbers, region) if form.numbers.strip() else [],
        "type": form.type,
        "sender": form.sender.strip() or None,
        "track_links": form.shorten_links,
        "attachments": [campaigns.Attachment(name, data)] if data else [],
    }


def _context(
    config: Config, session: Session, user: ConsoleUser, acc: Account, form: CampaignForm
) -> dict[str, Any]:
    assert acc.id is not None
    own = mt.own_number(config, acc)
    if not form.sender and not form.name:
        form.sender = acc.default_sender or ""
    return {
        **layout(session, user, acc, PATH),
        "form": form,
        "lists": contacts.list_summaries(session, acc),
        "templates": [t.name for t in mt.list_templates(session, acc)],
        "own_number": own,
        "max_file": links.max_file_size(config),
        "error": "",
        "notice": "",
        "data": None,
        "rows": PREVIEW_ROWS,
        "fields": [],
        "hint": False,
    }


@router.get("/campaigns/new", response_class=HTMLResponse)
async def new_campaign(
    ui: Page,
    account: str = "",
    list_name: Annotated[str, Query(alias="list")] = "",
    template: str = "",
) -> Response:
    """The campaign form (?list=NAME and ?template=NAME preselect one)."""
    form = CampaignForm(
        account=account,
        lists=[list_name] if list_name else [],
        template=template.strip().lower(),
    )

    def _load(session: Session) -> dict[str, Any]:
        acc = ui.user.account(session, account or None)
        # The short-links box starts from the account's click-tracking default.
        form.shorten_links = acc.track_links
        return _context(ui.hub.config, session, ui.user, acc, form)

    ctx = await ui.read(_load)
    return ui.render("campaign_new.html.j2", nav="campaigns", **ctx)


@router.post("/campaigns/new/preview", response_class=HTMLResponse)
async def preview_fragment(ui: Page, form: PostedCampaign) -> Response:
    """Each recipient's text, parts and credits, and the totals, of the campaign as filled
    in so far (an HTML fragment for console.js); nothing is written."""
    await asyncio.to_thread(scoped_account_id, ui.hub.engine, ui.user, form.account)
    data, error = None, ""
    if form.lists or form.numbers.strip():
        try:
            data = await _preview(ui, form)
        except HubError as exc:
            error = str(exc)
    return ui.render("_recipients_preview.html.j2", status=422 if error else 200, data=data,
        fields=[], error=error, rows=PREVIEW_ROWS, hint=False,
    )  # fmt: skip


async def _on_arguments(
    ui: PageContext,
    form: CampaignForm,
    work: Callable[[Session, Account, Arguments], T],
    *,
    write: bool,
) -> T:
    """WORK on the form's account, given the arguments of hub.campaigns.campaigns' preview,
    create and test for FORM (its file read first, within links.max_file_size; the rest
    checked when WORK asks for them)."""
    limit = links.max_file_size(ui.hub.config)
    attachment = await read_upload(form.upload, limit, "links.max_file_size")

    def _run(session: Session, acc: Account) -> T:
        region = account_region(ui.hub.config, acc)
        return work(session, acc, lambda: _arguments(form, region, attachment))

    return await on_account(ui, form.account, _run, write=write)


async def _preview(ui: PageContext, form: CampaignForm) -> dict[str, Any]:
    return await _on_arguments(
        ui,
        form,
        lambda session, acc, args: campaigns.preview_campaign(
            session, ui.hub.config, acc, **args()
        ),
        write=False,
    )


@router.post("/campaigns/new", response_class=HTMLResponse)
async def create(
    ui: Page,
    form: PostedCampaign,
    action: Annotated[str, Form()] = "create",
) -> Response:
    """Create the campaign (action=create), show its preview (action=preview, without
    JavaScript) or send the test SMS to the account's own number (action=test)."""
    await asyncio.to_thread(scoped_account_id, ui.hub.engine, ui.user, form.account)
    extra: dict[str, Any] = {}
    try:
        if action == "preview":
            extra["data"] = await _preview(ui, form)
        elif action == "test":
            extra["notice"] = await _test(ui, form)
        elif action == "create":
            return await _create(ui, form)
        else:
            raise InvalidInput("press Preview, Send a test SMS or Create the campaign")
    except HubError as exc:
        extra["error"] = str(exc)

    ctx = await on_account(
        ui,
        form.account,
        lambda session, acc: _context(ui.hub.config, session, ui.user, acc, form),
        write=False,
    )
    status = 422 if extra.get("error") else 200
    return ui.render("campaign_new.html.j2", status=status, nav="campaigns", **{**ctx, **extra})


async def _create(ui: PageContext, form: CampaignForm) -> Response:
    def _run(session: Session, acc: Account, args: Arguments) -> campaigns.CampaignResult:
        when = local_time(form.send_at, form.tz)
        return campaigns.create_campaign(
            session, ui.hub.config, acc, form.name, send_at=when, **args()
        )

    result = await _on_arguments(ui, form, _run, write=True)
    data = result.to_dict()
    counts = {
        "name": data["name"],
        "recipients": data["recipients"],
        "credits": data["credits"],
        "balance": data["balance_after"],
    }
    if data["status"] == campaigns.SCHEDULED:
        message = _(
            "Campaign %(name)s scheduled: %(recipients)s SMS, %(credits)s credits; "
            "balance %(balance)s.",
            **counts,
        )
    else:
        message = _(
            "Campaign %(name)s sending: %(recipients)s SMS, %(credits)s credits; "
            "balance %(balance)s.",
            **counts,
        )
    if data["rejected"]:
        message += " " + _(
            "%(num)s recipient(s) left out (see the preview for why).", num=len(data["rejected"])
        )
    if data["warnings"]:
        message += " " + " ".join(data["warnings"])
    return redirect(f"/console/campaigns/{data['id']}", message)


async def _test(ui: PageContext, form: CampaignForm) -> str:
    def _run(session: Session, acc: Account, arguments: Arguments) -> str:
        own = mt.own_number(ui.hub.config, acc)
        if own is None:
            raise InvalidInput(
                _(
                    "account %(account)s has no own number on record: a test SMS goes only "
                    "to the balance-alert SMS number; set it on the Account page first",
                    account=acc.name,
                )
            )
        args = arguments()
        result = campaigns.send_campaign_test(
            session,
            ui.hub.config,
            acc,
            own,
            text=args["text"],
            template=args["template"],
            type=args["type"],
            sender=args["sender"],
            track_links=args["track_links"],
            attachments=args["attachments"],
        )
        sent = result.recipients[0]
        if not result.accepted:
            raise InvalidInput(_("the test SMS was not sent: %(reason)s", reason=sent.reason))
        return _(
            "Test SMS sent to %(number)s (%(num)s part(s), free).",
            number=own,
            num=result.segments,
        )

    notice = await _on_arguments(ui, form, _run, write=True)
    if form.file_name:
        notice += " " + _("Choose the file again before creating the campaign.")
    return notice
