"""Plain-dict views of models, shared by the API and the CLI's --json output."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from hub.core.timeutil import as_utc
from hub.store.models import Account, CreditMode, Message, MessageEvent


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat() if value else None


def message_view(message: Message, events: Sequence[MessageEvent] | None = None) -> dict[str, Any]:
    """A message as the API and `smshub messages show --json` print it."""
    data: dict[str, Any] = {
        "id": message.id,
        "status": message.status,
        "reason": message.reason,
        "to": message.recipient,
        "sender": message.sender,
        "text": message.text,
        "type": message.type,
        "source": message.source,
        "encoding": message.encoding,
        "segments": message.segments,
        "credits": message.credits,
        "scheduled": message.scheduled,
        "send_at": _iso(message.due_at) if message.scheduled else None,
        "created_at": _iso(message.created_at),
        "sent_at": _iso(message.sent_at),
        "final_at": _iso(message.final_at),
        "attempts": message.attempts,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "detail": message.detail or None,
    }
    if events is not None:
        data["events"] = [
            {
                "status": e.status,
                "reason": e.reason,
                "detail": e.detail or None,
                "provider": e.provider,
                "at": _iso(e.created_at),
            }
            for e in events
        ]
    return data


def account_view(session: Session, account: Account, chain: Sequence[Account]) -> dict[str, Any]:
    """An account with the balance it can spend and its sub-accounts."""
    payer = next((a for a in chain if a.credit_mode == CreditMode.LIMITED), chain[-1])
    subs = session.exec(
        select(Account).where(Account.parent_id == account.id).order_by(col(Account.name))
    ).all()
    parent = chain[1].name if len(chain) > 1 else None
    return {
        "name": account.name,
        "parent": parent,
        "credit_mode": account.credit_mode,
        "balance": account.balance if account.credit_mode == CreditMode.LIMITED else None,
        "available": payer.balance,
        "draws_from": payer.name if payer.id != account.id else None,
        "disabled": account.disabled,
        "default_region": account.default_region,
        "default_sender": account.default_sender,
        "track_links": account.track_links,
        "sub_accounts": [s.name for s in subs],
    }
