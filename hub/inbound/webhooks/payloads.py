"""The events webhooks notify and the JSON body posted for each: the event types, the
body's envelope (``build_body``) and what each event's ``data`` holds.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from hub.core.timeutil import as_utc, utcnow
from hub.store.models import Message, MessageStatus

MESSAGE_DELIVERED = "message.delivered"
MESSAGE_FAILED = "message.failed"
INBOUND_RECEIVED = "inbound.received"
OPTOUT_CREATED = "optout.created"
LINK_CLICKED = "link.clicked"
PING = "ping"

# The types an endpoint can subscribe to; "ping" is sent only by `smshub webhooks test`.
EVENT_TYPES = frozenset(
    {MESSAGE_DELIVERED, MESSAGE_FAILED, INBOUND_RECEIVED, OPTOUT_CREATED, LINK_CLICKED}
)
# Final statuses notified as message.failed (with the reason).
FAILED_STATUSES = frozenset(
    {MessageStatus.UNDELIVERED, MessageStatus.FAILED, MessageStatus.DR_UNAVAILABLE}
)


def iso(value: datetime | None) -> str | None:
    """VALUE as the bodies write times: UTC, milliseconds, a Z."""
    if value is None:
        return None
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_body(event_id: str, event_type: str, account: str, data: dict[str, Any]) -> str:
    """The JSON body posted for an event (compact, UTF-8)."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "created_at": iso(utcnow()),
            "account": account,
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )


def message_data(message: Message) -> dict[str, Any]:
    """The `data` of message.delivered / message.failed."""
    status = message.status
    reason = message.reason
    if status == MessageStatus.DR_UNAVAILABLE:
        reason = reason or "dr_unavailable"
    elif status != MessageStatus.DELIVERED:
        reason = reason or "other"
    return {
        "message_id": message.id,
        "batch_id": message.batch_id,
        "status": status,
        "reason": reason,
        "detail": message.detail,
        "recipient": message.recipient,
        "sender": message.sender,
        "type": message.type,
        "source": message.source,
        "segments": message.segments,
        "credits": message.credits,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "created_at": iso(message.created_at),
        "sent_at": iso(message.first_sent_at or message.sent_at),
        "final_at": iso(message.final_at),
    }


def inbound_data(inbound: Any) -> dict[str, Any]:
    """The `data` of inbound.received, for a stored InboundMessage."""
    return {
        "inbound_id": inbound.id,
        "from": inbound.sender,
        "to": inbound.recipient,
        "text": inbound.text,
        "received_at": iso(inbound.received_at),
        "provider": inbound.provider,
        "reply_to_message_id": inbound.reply_to_message_id,
    }


def optout_data(optout: Any) -> dict[str, Any]:
    """The `data` of optout.created, for a stored OptOutEvent."""
    return {
        "optout_id": optout.id,
        "number": optout.number,
        "source": optout.source,
        "note": optout.note,
        "created_at": iso(optout.created_at),
    }
