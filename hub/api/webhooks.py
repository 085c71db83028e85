"""/v1/webhooks: an account's outgoing webhook endpoints.

The endpoints of `smshub webhooks` and the console (hub.inbound.webhooks). A URL added with a
token goes through the outbound guard as one added in the console does: a host that is or
resolves to a private, loopback or otherwise non-public address is refused now, and every
delivery checks again (``hub.outbound``). Only the hub administrator's CLI may aim a webhook
at the hub's own network. The signing secret is shown once, in the creation answer.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from hub.api.auth import AccountQuery, Caller, CallerDep
from hub.api.errors import error_responses
from hub.api.support import ChangeDep, LimitDep, in_session, next_cursor
from hub.core.timeutil import as_utc
from hub.inbound import webhooks
from hub.store.models import Account, WebhookEndpoint
from hub.web.deps import HubDep
from hub.web.edge import MAX_ROW_ID, RowId, Text

TAG = "webhooks"
router = APIRouter(prefix="/v1/webhooks", tags=[TAG])
_EVENTS = ", ".join(sorted(webhooks.EVENT_TYPES - {webhooks.PING}))


class Webhook(BaseModel):
    id: int
    account: str
    url: str = Field(examples=["https://crm.example.com/smshub"])
    events: list[str] = Field(examples=[["message.delivered", "optout.created"]])
    enabled: bool
    created_at: str


class NewWebhookAnswer(Webhook):
    secret: str = Field(
        description="The signing secret (Smshub-Signature): shown in this answer only"
    )


class WebhookPage(BaseModel):
    """One page of endpoints, by id; pass ``next`` as ``after``."""

    webhooks: list[Webhook]
    next: int | None = None


class NewWebhook(BaseModel):
    url: Text = Field(description="A public https:// URL", examples=["https://crm.example.com/h"])
    events: list[Text] = Field(
        default_factory=lambda: ["*"],
        description=f"Event types to send, or * for all: {_EVENTS}",
        max_length=20,
    )


class WebhookChange(BaseModel):
    enabled: bool = Field(description="false: no new events; what is queued waits")


class PingQueued(BaseModel):
    id: int
    queued: bool = True


def _view(endpoint: WebhookEndpoint, account: str) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "account": account,
        "url": endpoint.url,
        "events": endpoint.events.split(","),
        "enabled": endpoint.enabled,
        "created_at": as_utc(endpoint.created_at).isoformat(),
    }


def _own(session: Session, who: Caller, endpoint_id: int) -> tuple[WebhookEndpoint, str]:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    who.owns(endpoint.account_id if endpoint else None, f"webhook {endpoint_id}")
    assert endpoint is not None
    owner = session.get(Account, endpoint.account_id)
    return endpoint, owner.name if owner else "?"


@router.get("", summary="List webhooks", responses=error_responses(404))
async def get_webhooks(
    who: CallerDep,
    hub: HubDep,
    limit: LimitDep,
    account: AccountQuery = None,
    after: int = Query(0, ge=0, le=MAX_ROW_ID, description="`next` of the previous page"),
) -> WebhookPage:
    """Endpoints of your account and its sub-accounts (or of ``account``); never their
    secrets."""

    def _run(session: Session) -> WebhookPage:
        ids = [who.account(session, account).id or 0] if account else who.scope
        rows = webhooks.list_endpoints(session, account_ids=ids, after=after, limit=limit)
        names = webhooks.owner_names(session, rows)
        return WebhookPage(
            webhooks=[Webhook(**_view(e, names.get(e.account_id, "?"))) for e in rows],
            next=next_cursor(rows, limit, lambda r: r.id),
        )

    return await in_session(hub, _run)


@router.post(
    "",
    status_code=201,
    summary="Add a webhook",
    response_model=NewWebhookAnswer,
    responses=error_responses(404, 409),
)
async def create_webhook(
    body: NewWebhook, change: ChangeDep, account: AccountQuery = None
) -> Response:
    """Register a public URL for the account's events; the answer holds its signing
    secret, shown this once. A URL on a private or local network is refused (422)."""
    url = webhooks.check_public_url(body.url)
    events = webhooks.validate_events(body.events)
    await asyncio.to_thread(webhooks.check_resolves_public, url)

    def _run(session: Session, acc: Account) -> dict[str, Any]:
        assert acc.id is not None
        endpoint, secret = webhooks.add_endpoint(session, acc.id, url, events)
        return {**_view(endpoint, acc.name), "secret": secret}

    work = change.who.on_account(account, _run)
    return await change.answer(body, 201, work)


@router.get("/{endpoint_id}", summary="One webhook", responses=error_responses(404))
async def get_webhook(endpoint_id: RowId, who: CallerDep, hub: HubDep) -> Webhook:
    """An endpoint (without its secret)."""
    return await in_session(hub, lambda s: Webhook(**_view(*_own(s, who, endpoint_id))))


@router.patch(
    "/{endpoint_id}", summary="Enable or disable a webhook", responses=error_responses(404)
)
async def change_webhook(
    endpoint_id: RowId, body: WebhookChange, who: CallerDep, hub: HubDep
) -> Webhook:
    """A disabled endpoint gets no new events; what it has queued waits until it is
    enabled again."""

    def _run(session: Session) -> Webhook:
        _endpoint, owner = _own(session, who, endpoint_id)
        changed = webhooks.disable_endpoint(session, endpoint_id, not body.enabled)
        return Webhook(**_view(changed, owner))

    return await in_session(hub, _run)


@router.delete("/{endpoint_id}", summary="Remove a webhook", responses=error_responses(404))
async def delete_webhook(endpoint_id: RowId, who: CallerDep, hub: HubDep) -> Webhook:
    """Delete an endpoint with its queued deliveries and its delivery log."""

    def _run(session: Session) -> Webhook:
        endpoint, owner = _own(session, who, endpoint_id)
        gone = Webhook(**_view(endpoint, owner))
        webhooks.remove_endpoint(session, endpoint_id)
        return gone

    return await in_session(hub, _run)


@router.post(
    "/{endpoint_id}/ping",
    status_code=202,
    summary="Send a test event",
    responses=error_responses(404),
)
async def ping_webhook(endpoint_id: RowId, who: CallerDep, hub: HubDep) -> PingQueued:
    """Queue a ``ping`` event for the endpoint (signed like every event)."""

    def _run(session: Session) -> None:
        _own(session, who, endpoint_id)
        webhooks.queue_ping(session, endpoint_id)

    await in_session(hub, _run)
    hub.webhook_sender.wake()
    return PingQueued(id=endpoint_id)
