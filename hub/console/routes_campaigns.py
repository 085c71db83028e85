"""Console pages: campaigns (list, report, CSV export, cancel)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from hub.campaigns.campaigns import cancel_campaign, export_campaign
from hub.console.actions import cancelled
from hub.console.campaign_query import (
    campaign_page,
    own_campaign,
    parse_id,
    refresh_statuses,
    report,
)
from hub.console.forms import optional_row_id
from hub.console.page import Page
from hub.console.render import csv_download
from hub.store.db import read_scope

router = APIRouter()


def _page_id(value: str | None, name: str) -> int | None:
    damaged = f"this page link is damaged ({name}={(value or '')[:20]!r}); start again"
    return optional_row_id(value, damaged)


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns(ui: Page) -> Response:
    """The campaigns of the user's accounts, newest first, one page at a time."""
    before = _page_id(ui.request.query_params.get("before"), "before")
    after = _page_id(ui.request.query_params.get("after"), "after")
    size = ui.hub.config.console.page_size

    def _load() -> dict[str, Any]:
        with read_scope(ui.hub.engine) as session:
            names = {a.id: a.name for a in ui.user.accounts(session)}
            result = campaign_page(session, ui.user.scope, size, before=before, after=after)
        refresh_statuses(ui.hub.engine, result.rows)
        return {
            "rows": result.rows,
            "names": names,
            "show_account": len(names) > 1,
            "next_url": f"/console/campaigns?before={result.older}" if result.older else None,
            "prev_url": f"/console/campaigns?after={result.newer}" if result.newer else None,
        }

    ctx = await asyncio.to_thread(_load)
    return ui.render("campaigns_list.html.j2", nav="campaigns", **ctx)


# Declared before /campaigns/{campaign_id}, whose parameter would also match "12.csv".
@router.get("/campaigns/{campaign_id}.csv")
async def campaign_csv(ui: Page, campaign_id: str) -> Response:
    """One CSV row per recipient of the campaign (UTF-8 with BOM)."""
    cid = parse_id(campaign_id)

    def _export(session: Session) -> bytes:
        own_campaign(session, ui.user, cid)
        return export_campaign(session, cid)

    body = await ui.read(_export)
    return csv_download(body, f"campaign-{cid}.csv")


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_detail(ui: Page, campaign_id: str) -> Response:
    """A campaign's report: counts per state, parts, credits, clicks; Cancel while scheduled."""
    cid = parse_id(campaign_id)
    data = await asyncio.to_thread(report, ui.hub.engine, ui.user, cid)
    return ui.render(
        "campaigns_detail.html.j2",
        nav="campaigns",
        c=data,
        show_account=len(ui.user.scope) > 1,
    )


@router.post("/campaigns/{campaign_id}/cancel")
async def campaign_cancel(ui: Page, campaign_id: str) -> Response:
    """Cancel a campaign that has not started: every SMS of it, refunded."""
    cid = parse_id(campaign_id)
    url = f"/console/campaigns/{cid}"

    def _cancel(session: Session) -> dict[str, Any]:
        own_campaign(session, ui.user, cid)
        return cancel_campaign(session, cid)

    return await cancelled(
        ui.hub,
        url,
        _cancel,
        lambda done: (
            f"Campaign cancelled: {done['cancelled']} SMS, "
            f"{done['credits_refunded']} credits refunded."
        ),
    )
