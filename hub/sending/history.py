"""Reading the message history: the one listing of messages and the one detail view that the
API (``GET /v1/messages``, ``GET /v1/messages/{id}``) and the CLI (``smshub messages
list|show``) print.

Both interfaces answer the same rows in the same order: newest first (``created_at``
descending), at most ``limit``, optionally of one status and created before a time. Who may
see what stays with the caller: the API passes the token's scope as ``account_ids``, the
CLI (the hub administrator) passes one account's id or nothing for every account::

    # GET /v1/messages and GET /v1/messages/{id}
    list_messages(session, account_ids=who.scope, status=status, before=before, limit=limit)
    message_detail(session, message_id, account_ids=who.scope)
    # smshub messages list [--account NAME] [--status S] [--limit N], and messages show ID
    ids = [get_account(session, account).id] if account else None
    list_messages(session, account_ids=ids, status=status, limit=limit)
    message_detail(session, message_id, hint=" (list them with `smshub messages list`)")
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from hub.errors import NotFound
from hub.store.models import Message, MessageEvent
from hub.store.views import message_view


def list_messages(
    session: Session,
    *,
    account_ids: Collection[int] | None = None,
    status: str | None = None,
    before: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest LIMIT messages as ``message_view`` dicts, newest first.

    ACCOUNT_IDS: only messages of these accounts (None: of every account, as the CLI lists
    them). STATUS: only this status (empty: any). BEFORE: only messages created before it
    (the cursor of the next page).
    """
    query = select(Message)
    if account_ids is not None:
        query = query.where(col(Message.account_id).in_(account_ids))
    if status:
        query = query.where(Message.status == status)
    if before:
        query = query.where(col(Message.created_at) < before)
    rows = session.exec(query.order_by(col(Message.created_at).desc()).limit(limit)).all()
    return [message_view(m) for m in rows]


def message_detail(
    session: Session,
    message_id: str,
    *,
    account_ids: Collection[int] | None = None,
    hint: str = "",
) -> dict[str, Any]:
    """Message MESSAGE_ID with its events in order, as a ``message_view`` dict.

    NotFound (its text followed by HINT, e.g. how to list the ids) when there is no such
    message, or when ACCOUNT_IDS is given and the message belongs to none of them: another
    account's message is answered exactly like a missing one.
    """
    message = session.get(Message, message_id)
    if message is None or (account_ids is not None and message.account_id not in account_ids):
        raise NotFound(f"no message {message_id!r}{hint}")
    events = session.exec(
        select(MessageEvent)
        .where(MessageEvent.message_id == message_id)
        .order_by(col(MessageEvent.id))
    ).all()
    return message_view(message, events)
