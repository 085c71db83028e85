"""/v1/messages: send SMS, read them back with their history, cancel a scheduled one.

Sends go through the one submit path (``Hub.submit``) as every other door's do; a token
sends as its own account or, with ``account``, as one of its sub-accounts. Listing and
detail are the read service ``hub.sending.history`` that ``smshub messages`` prints too.
"""

# No `from __future__ import annotations` here: FastAPI resolves route annotations at runtime.

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field

from hub.api.auth import CallerDep
from hub.api.support import in_session, once_per_key
from hub.sending import history, idempotency
from hub.sending import submit as sending
from hub.store.views import message_view
from hub.web.deps import HubDep
from hub.web.edge import Text

TAG = "messages"
router = APIRouter()


class SendBody(BaseModel):
    to: list[Text] | Text = Field(description="Phone numbers in any format")
    text: Text
    sender: Text | None = None
    type: Literal["alert", "marketing"] = "alert"
    send_at: datetime | None = Field(None, description="ISO 8601 time to send; omitted: now")
    account: Text | None = Field(None, description="A sub-account to send as (default: yours)")
    shorten_links: bool | None = Field(
        None,
        description="Replace each URL by a short link per recipient (clicks counted); "
        "omitted: the account's default (track_links in GET /v1/account)",
    )


@router.post("/v1/messages", status_code=202, tags=[TAG])
async def send_messages(
    body: SendBody,
    who: CallerDep,
    hub: HubDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Queue an SMS to one or more numbers; returns one result per recipient."""
    account = who.account_name
    if body.account and body.account != who.account_name:
        account = await in_session(hub, lambda s: who.account(s, body.account).name)
    request = sending.SubmitRequest(
        account=account,
        recipients=[body.to] if isinstance(body.to, str) else body.to,
        text=body.text,
        sender=body.sender,
        type=body.type,
        send_at=body.send_at,
        source="api",
        idempotency_key=f"api:{who.account_id}:{idempotency_key}" if idempotency_key else None,
        shorten_links=body.shorten_links,
    )
    print_ = idempotency.fingerprint(
        "POST", "/v1/messages", who.account_id, body.model_dump(mode="json")
    )

    async def _submit() -> dict[str, Any]:
        return (await asyncio.to_thread(hub.submit, request)).to_dict()

    answer = await once_per_key(hub, who, idempotency_key, print_, 202, _submit)
    return answer  # type: ignore[return-value]  # a JSONResponse: 202, or the replayed one


@router.get("/v1/messages/{message_id}", tags=[TAG])
async def get_message(message_id: str, who: CallerDep, hub: HubDep) -> dict[str, Any]:
    """One message with its history."""
    return await in_session(
        hub, lambda s: history.message_detail(s, message_id, account_ids=who.scope)
    )


@router.get("/v1/messages", tags=[TAG])
async def list_messages(
    who: CallerDep,
    hub: HubDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: datetime | None = None,
) -> dict[str, Any]:
    """Messages of your account and its sub-accounts, newest first."""
    rows = await in_session(
        hub,
        lambda s: history.list_messages(
            s, account_ids=who.scope, status=status, before=before, limit=limit
        ),
    )
    return {"messages": rows}


@router.delete("/v1/messages/{message_id}", tags=[TAG])
async def cancel_message(message_id: str, who: CallerDep, hub: HubDep) -> dict[str, Any]:
    """Cancel a scheduled (not yet sending) message; its credits are refunded."""
    return await in_session(
        hub, lambda s: message_view(sending.cancel(s, message_id, account_ids=set(who.scope)))
    )
