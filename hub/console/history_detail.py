"""One message as the console shows it: its facts, events, campaign, links and clicks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.errors import NotFound
from hub.store.models import (
    Account,
    Campaign,
    LinkClick,
    Message,
    MessageEvent,
    MessageStatus,
    ShortLink,
)

if TYPE_CHECKING:
    from hub.console.auth import ConsoleUser


def own_message(session: Session, user: ConsoleUser, message_id: str) -> Message:
    """Message MESSAGE_ID if it belongs to one of USER's accounts.

    Another account's message is "not found", like one that does not exist, so ids cannot
    be probed.
    """
    message = session.get(Message, message_id) if len(message_id) <= 32 else None
    if message is None or message.account_id not in user.scope:
        raise NotFound(f"no message {message_id[:40]!r} among your accounts' messages")
    return message


def load(session: Session, user: ConsoleUser, message_id: str) -> dict[str, Any]:
    """The template context of the message page."""
    message = own_message(session, user, message_id)
    events = session.exec(
        select(MessageEvent)
        .where(MessageEvent.message_id == message.id)
        .order_by(col(MessageEvent.id))
    ).all()
    campaign = session.get(Campaign, message.campaign_id) if message.campaign_id else None
    links = session.execute(
        select(ShortLink, func.count(col(LinkClick.id)))
        .outerjoin(LinkClick, col(LinkClick.link_id) == col(ShortLink.id))
        .where(ShortLink.message_id == message.id)
        .group_by(col(ShortLink.id))
        .order_by(col(ShortLink.id))
    ).all()
    names = {
        a.id: a.name
        for a in session.exec(
            select(Account).where(
                col(Account.id).in_({message.account_id, message.charged_account_id})
            )
        )
    }
    return {
        "message": message,
        "events": events,
        "campaign": campaign,
        "links": [(link, int(clicks)) for link, clicks in links],
        "account_name": names.get(message.account_id, ""),
        "charged_name": names.get(message.charged_account_id, ""),
        "show_account": len(user.scope) > 1,
        "cancellable": message.status == MessageStatus.QUEUED.value,
    }
