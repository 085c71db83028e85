"""/v1/campaigns: personalised sends to lists and numbers, now or scheduled, and their reports.

The campaigns of `smshub campaigns` and the console (hub.campaigns.campaigns): created with
a text or a saved template, charged at once, scheduled with ``send_at``, cancelled (and refunded)
until the first message is taken; the report counts messages by status, credits, clicks,
and the recipients who opted out since with the date (as the CSV export's ``stop_at``).
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from hub.api.auth import AccountQuery, Caller, CallerDep
from hub.api.errors import error_responses
from hub.api.models import RejectedLine
from hub.api.support import (
    ChangeDep,
    LimitDep,
    check_count,
    in_session,
    next_cursor,
)
from hub.api.templates import Preview
from hub.campaigns import campaigns
from hub.campaigns import templates as mt
from hub.errors import InvalidInput
from hub.sending import invalid_numbers
from hub.store.models import Account, Campaign
from hub.web.deps import HubDep
from hub.web.edge import MAX_ROW_ID, RowId, Text

T = TypeVar("T")
TAG = "campaigns"
router = APIRouter(prefix="/v1/campaigns", tags=[TAG])


class CampaignSummary(BaseModel):
    id: int
    name: str
    account: str | None
    status: Literal["scheduled", "sending", "sent", "cancelled"]
    type: str
    sender: str | None
    send_at: str | None
    created_at: str
    recipients: int
    credits: int


class CampaignPage(BaseModel):
    """One page of campaigns, newest first; pass ``next`` as ``before``."""

    campaigns: list[CampaignSummary]
    next: int | None = None


class NewCampaign(BaseModel):
    name: Text = Field(description="1 to 128 characters", examples=["Soldes d'hiver"])
    text: Text | None = Field(
        None,
        description="The text, with merge fields; or give `template`",
        examples=["Bonjour {{ first_name }}, -20% ce week-end !"],
    )
    template: Text | None = Field(None, description="A saved template's name instead of `text`")
    lists: list[Text] = Field(default_factory=list, examples=[["clients"]])
    numbers: list[Text] = Field(default_factory=list, description="Recipients by number too")
    type: Literal["marketing", "alert"] = "marketing"
    sender: Text | None = None
    send_at: datetime | None = Field(
        None, description="Schedule it (ISO 8601, UTC if no offset); omitted: now"
    )


class CampaignCreated(BaseModel):
    id: int
    name: str
    status: str
    type: str
    sender: str | None
    send_at: str | None
    recipients: int
    credits: int
    segments: int
    balance_after: int | None
    rejected: list[dict[str, str]] = Field(description="Recipients left out: input and reason")
    warnings: list[str]


class CampaignPreview(BaseModel):
    text: Text | None = None
    template: Text | None = None
    lists: list[Text] = Field(default_factory=list)
    numbers: list[Text] = Field(default_factory=list)
    type: Literal["marketing", "alert"] = "marketing"
    sender: Text | None = None


class OptOut(BaseModel):
    number: str
    stop_at: str = Field(description="When the recipient opted out after the campaign")
    source: str = Field(examples=["sms", "link", "manual"])


class CampaignReport(CampaignSummary):
    text: str
    counts: dict[str, int]
    credits_charged: int
    credits_refunded: int
    credits_net: int
    clicks: int
    recipients_who_clicked: int
    opted_out: int
    opt_outs: list[OptOut] = Field(description="The first 100; the CSV export lists them all")


class Cancelled(BaseModel):
    id: int
    cancelled: int = Field(description="Messages cancelled")
    credits_refunded: int


class InvalidAdded(BaseModel):
    added: int
    already: int
    rejected: list[RejectedLine]
    format: str


def own_campaign(session: Session, who: Caller, campaign_id: int) -> Campaign:
    """Campaign CAMPAIGN_ID if one of the caller's accounts owns it, else NotFound."""
    found = session.get(Campaign, campaign_id)
    who.owns(found.account_id if found else None, f"campaign {campaign_id}")
    assert found is not None
    return found


def on_campaign(
    who: Caller, campaign_id: int, work: Callable[[Session, int], T]
) -> Callable[[Session], T]:
    """WORK given CAMPAIGN_ID once ``own_campaign`` has checked it is the caller's, in the
    session WORK runs in (as ``Caller.on_account`` does for an account)."""

    def _run(session: Session) -> T:
        own_campaign(session, who, campaign_id)
        return work(session, campaign_id)

    return _run


@router.get("", summary="List campaigns", responses=error_responses(404))
async def get_campaigns(
    who: CallerDep,
    hub: HubDep,
    limit: LimitDep,
    account: AccountQuery = None,
    before: int | None = Query(None, ge=1, le=MAX_ROW_ID, description="`next` of a page"),
) -> CampaignPage:
    """Campaigns of your account and its sub-accounts (or of ``account``), newest first,
    with their current status."""

    def _run(session: Session) -> CampaignPage:
        ids = [who.account(session, account).id or 0] if account else who.scope
        rows = campaigns.list_campaigns(session, account_ids=ids, before=before, limit=limit)
        return CampaignPage(
            campaigns=[CampaignSummary(**r) for r in rows],
            next=next_cursor(rows, limit, lambda r: r["id"]),
        )

    return await in_session(hub, _run)


@router.post(
    "",
    status_code=201,
    summary="Create or schedule a campaign",
    response_model=CampaignCreated,
    responses=error_responses(402, 403, 404, 409, 413),
)
async def create_campaign(
    body: NewCampaign, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """One personalised SMS per recipient (lists first, then numbers; each number
    once), charged at once. With ``send_at`` in the future it is scheduled and can be
    cancelled until it starts. Recipients that cannot receive it are reported in
    ``rejected``; the others are sent."""
    check_count(change.hub, body.numbers, "numbers")
    check_count(change.hub, body.lists, "lists")

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        result = campaigns.create_campaign(
            session,
            change.hub.config,
            acc,
            body.name,
            text=body.text,
            template=body.template,
            lists=body.lists,
            numbers=body.numbers,
            type=body.type,
            sender=body.sender,
            send_at=body.send_at,
        )
        return result.to_dict()

    work = change.who.on_account(account, _run)
    answer = await change.answer(body, 201, work)
    if change.hub.dispatcher is not None:
        change.hub.dispatcher.wake()  # messages due now go out without waiting for a poll
    return answer


@router.post(
    "/preview",
    summary="Preview a campaign",
    responses=error_responses(404, 413),
)
async def preview_campaign(
    body: CampaignPreview, who: CallerDep, hub: HubDep, account: AccountQuery = None
) -> Preview:
    """Each recipient's exact text (opt-out mention included), parts and credits, and
    who would be left out and why; sends nothing."""
    check_count(hub, body.numbers, "numbers")
    check_count(hub, body.lists, "lists")
    if (body.text is None) == (body.template is None):
        raise InvalidInput("give the campaign a `text` or a saved `template` (one of them)")
    if not body.lists and not body.numbers:
        raise InvalidInput("name the recipients: `lists`, `numbers` or both")

    def _run(session: Session, acc: Account) -> Preview:
        source = (
            mt.get_template(session, acc, body.template)
            if body.template is not None
            else body.text or ""
        )
        return Preview(
            **mt.preview_personalized(
                session,
                hub.config,
                acc,
                source,
                lists=body.lists,
                numbers=body.numbers,
                type=body.type,
                sender=body.sender,
            )
        )

    return await in_session(hub, who.on_account(account, _run))


@router.get("/{campaign_id}", summary="A campaign's report", responses=error_responses(404))
async def get_campaign(campaign_id: RowId, who: CallerDep, hub: HubDep) -> CampaignReport:
    """Messages by status, credits charged and refunded, clicks, and the recipients who
    opted out since (STOP reply, unsubscribe link, by hand) with the date."""
    work = on_campaign(who, campaign_id, campaigns.campaign_report)
    return CampaignReport(**await in_session(hub, work))


@router.post(
    "/{campaign_id}/cancel",
    summary="Cancel a scheduled campaign",
    response_model=Cancelled,
    responses=error_responses(404, 409),
)
async def cancel_campaign(campaign_id: RowId, change: ChangeDep) -> Response:
    """Cancel every message of a campaign that has not started sending, refunded; 409
    once a message has been taken by the dispatcher (nothing is then cancelled)."""
    work = on_campaign(change.who, campaign_id, campaigns.cancel_campaign)
    return await change.answer({}, 200, work)


@router.get(
    "/{campaign_id}/export",
    summary="Export a campaign's recipients as CSV",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "One row per recipient: " + ", ".join(campaigns.EXPORT_COLUMNS),
        },
        **error_responses(404),
    },
)
async def export_campaign(campaign_id: RowId, who: CallerDep, hub: HubDep) -> Response:
    """Per-recipient CSV (UTF-8 with BOM): status, reason, parts, credits, times,
    clicks, text, and ``stop_at`` for those who opted out since."""
    work = on_campaign(who, campaign_id, campaigns.export_campaign)
    return Response(
        await in_session(hub, work),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


@router.post(
    "/{campaign_id}/invalid-numbers",
    summary="Add a campaign's invalid numbers to the invalid list",
    response_model=InvalidAdded,
    responses=error_responses(404, 409),
)
async def add_invalid(campaign_id: RowId, change: ChangeDep) -> Response:
    """Put every number the campaign's sends were reported invalid for on the
    invalid-number list of the campaign's account."""

    def _run(session: Session) -> dict[str, Any]:
        found = own_campaign(session, change.who, campaign_id)
        owner = session.get(Account, found.account_id)
        assert owner is not None
        return invalid_numbers.add_campaign_invalid(session, owner, campaign_id).to_dict()

    return await change.answer({}, 200, _run)
