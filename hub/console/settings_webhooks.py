"""Console page /console/webhooks: an account's outgoing webhooks (add with the signing
secret shown once, disable or enable, remove, send a test event) and recent deliveries."""

# No `from __future__ import annotations`: FastAPI reads these annotations at runtime.

import asyncio
from collections import defaultdict
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup, escape
from sqlalchemy import select as sa_select
from sqlalchemy import union_all
from sqlmodel import Session, col, select

from hub.console.actions import changed_page, on_row, settings_page
from hub.console.auth import ConsoleUser
from hub.console.page import Page, PageContext
from hub.console.render import redirect
from hub.console.settings_common import layout
from hub.core.i18n import gettext as _
from hub.inbound import webhooks
from hub.store.models import Account, WebhookDelivery, WebhookEndpoint
from hub.web.edge import RowId

if TYPE_CHECKING:
    pass

router = APIRouter()
PATH = "/console/webhooks"
TEMPLATE = "settings_webhooks.html.j2"
RECENT = 5


async def _check_resolved(url: str) -> None:
    # Briefly (the guard's lookup timeout): the form waits for it.
    await asyncio.to_thread(webhooks.check_resolves_public, url)


def breakable(url: str) -> Markup:
    """URL, escaped, with line-break chances after / and . so it wraps on a phone."""
    text = str(escape(url))
    return Markup(text.replace("/", "/<wbr>").replace(".", ".<wbr>"))


def _recent(session: Session, ids: list[int]) -> dict[int, list[Any]]:
    """The last RECENT deliveries of each endpoint, in one query."""
    if not ids:
        return {}
    # One LIMITed select per endpoint, glued with UNION ALL: each uses the endpoint_id
    # index, where a window function would read every delivery the endpoints ever had.
    parts = [
        sa_select(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(col(WebhookDelivery.id).desc())
            .limit(RECENT)
            .subquery()
        )
        for endpoint_id in ids
    ]
    found: dict[int, list[Any]] = defaultdict(list)
    for row in session.execute(union_all(*parts)).mappings():
        found[row["endpoint_id"]].append(row)
    for rows in found.values():
        rows.sort(key=lambda r: r["id"], reverse=True)
    return found


def _context(session: Session, user: ConsoleUser, account: Account) -> dict[str, Any]:
    endpoints = session.exec(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account.id)
        .order_by(col(WebhookEndpoint.id))
    ).all()
    return {
        **layout(session, user, account, PATH),
        "endpoints": endpoints,
        "shown_urls": {e.id: breakable(e.url) for e in endpoints},
        "recent": _recent(session, [e.id for e in endpoints if e.id is not None]),
        "event_types": sorted(webhooks.EVENT_TYPES),
        "new_secret": None,
        "new_endpoint": None,
    }


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(ui: Page, account: str = "") -> Response:
    """The account's webhook endpoints with their recent deliveries."""
    return await settings_page(ui, account, TEMPLATE, lambda s, acc: _context(s, ui.user, acc))


@router.post("/webhooks", response_class=HTMLResponse)
async def webhooks_add(
    ui: Page,
    account: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Add an endpoint and show its signing secret once, in this response only."""
    checked = webhooks.check_public_url(url)
    chosen = webhooks.validate_events(events or [])
    await _check_resolved(checked)

    def _add(session: Session, acc: Account) -> dict[str, Any]:
        assert acc.id is not None
        endpoint, secret = webhooks.add_endpoint(session, acc.id, checked, chosen)
        return {"new_secret": secret, "new_endpoint": endpoint.id}

    # A page, not a redirect: the secret must not travel in a cookie or a URL.
    return await changed_page(
        ui,
        account,
        TEMPLATE,
        _add,
        lambda s, acc: _context(s, ui.user, acc),
    )


async def _change(ui: PageContext, endpoint_id: int, action: str) -> str:
    """Apply ACTION to one of the user's endpoints; returns the page to go back to."""

    def _do(session: Session, endpoint: WebhookEndpoint, _acc: Account) -> None:
        if action == "remove":
            webhooks.remove_endpoint(session, endpoint_id)
        elif action == "test":
            webhooks.queue_ping(session, endpoint_id)
        else:
            webhooks.disable_endpoint(session, endpoint_id, action == "disable")

    _done, url = await on_row(ui, WebhookEndpoint, endpoint_id, "webhook", PATH, _do)
    return url


@router.post("/webhooks/{endpoint_id}/disable")
async def webhooks_disable(ui: Page, endpoint_id: RowId) -> Response:
    """Stop sending to an endpoint; what it has queued waits until it is enabled."""
    url = await _change(ui, endpoint_id, "disable")
    return redirect(url, _("Webhook %(id)s disabled.", id=endpoint_id))


@router.post("/webhooks/{endpoint_id}/enable")
async def webhooks_enable(ui: Page, endpoint_id: RowId) -> Response:
    """Send to an endpoint again."""
    url = await _change(ui, endpoint_id, "enable")
    return redirect(url, _("Webhook %(id)s enabled.", id=endpoint_id))


@router.post("/webhooks/{endpoint_id}/remove")
async def webhooks_remove(ui: Page, endpoint_id: RowId) -> Response:
    """Delete an endpoint with its queued deliveries and its log."""
    url = await _change(ui, endpoint_id, "remove")
    return redirect(url, _("Webhook %(id)s removed.", id=endpoint_id))


@router.post("/webhooks/{endpoint_id}/test")
async def webhooks_test(ui: Page, endpoint_id: RowId) -> Response:
    """Queue a ping event for an endpoint and wake the sender."""
    url = await _change(ui, endpoint_id, "test")
    ui.hub.webhook_sender.wake()
    return redirect(
        url,
        _("Test event queued for webhook %(id)s; reload to see how it went.", id=endpoint_id),
    )
