"""Campaigns as the console lists and reports them (the domain is hub.campaigns.campaigns).

The list pages by campaign id (newest first, keyset). A campaign's stored status is
brought up to date from its messages when read (``hub.campaigns.campaigns.refresh_status``); only
campaigns still scheduled or sending can change, so only those are counted, in one
grouped query per page, and only then is a write transaction opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.campaigns.campaigns import CANCELLED, SENT, campaign_report, refresh_status
from hub.errors import NotFound
from hub.store.db import read_scope, session_scope
from hub.store.models import Campaign, Message, MessageStatus
from hub.web.edge import row_id_or_none

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from hub.console.auth import ConsoleUser

_SETTLED = frozenset({SENT, CANCELLED})
QUEUED = MessageStatus.QUEUED.value
_UNSTARTED = frozenset({QUEUED, MessageStatus.CANCELLED.value})


@dataclass
class CampaignPage:
    """One page of campaigns and the ids to page from (None at either end)."""

    rows: list[Campaign]
    older: int | None
    newer: int | None


def parse_id(value: str) -> int:
    """A campaign id from a URL; anything else is a campaign that does not exist."""
    number = row_id_or_none(value)
    if number is None:
        raise NotFound(f"no campaign {value[:40]!r}: campaign ids are numbers")
    return number


def own_campaign(session: Session, user: ConsoleUser, campaign_id: int) -> Campaign:
    """Campaign CAMPAIGN_ID if one of USER's accounts owns it (else not found: no probing)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.account_id not in user.scope:
        raise NotFound(f"no campaign {campaign_id} among your accounts' campaigns")
    return campaign


def campaign_page(
    session: Session,
    scope: frozenset[int],
    size: int,
    *,
    before: int | None = None,
    after: int | None = None,
) -> CampaignPage:
    """SIZE campaigns of SCOPE older than BEFORE, newer than AFTER, or the newest."""
    query = select(Campaign).where(col(Campaign.account_id).in_(scope))
    if after is not None:
        newer = session.exec(
            query.where(col(Campaign.id) > after).order_by(col(Campaign.id)).limit(size + 1)
        ).all()
        if len(newer) > size:
            rows = list(reversed(newer[:size]))
            return CampaignPage(rows, rows[-1].id, rows[0].id)
        before = None
    if before is not None:
        query = query.where(col(Campaign.id) < before)
    found = list(session.exec(query.order_by(col(Campaign.id).desc()).limit(size + 1)).all())
    rows = found[:size]
    return CampaignPage(
        rows,
        rows[-1].id if len(found) > size and rows else None,
        rows[0].id if before is not None and rows else None,
    )


def refresh_statuses(engine: Engine, campaigns: list[Campaign]) -> None:
    """Bring the status of CAMPAIGNS still scheduled or sending up to date (stored too)."""
    live = {c.id: c for c in campaigns if c.status not in _SETTLED and c.id is not None}
    if not live:
        return
    counts: dict[int, dict[str, int]] = {cid: {} for cid in live}
    with session_scope(engine) as session:
        for campaign_id, status, n in session.execute(
            select(Message.campaign_id, Message.status, func.count())
            .where(col(Message.campaign_id).in_(list(live)))
            .group_by(col(Message.campaign_id), col(Message.status))
        ).all():
            counts[int(campaign_id)][str(status)] = int(n)
        for stored in session.exec(select(Campaign).where(col(Campaign.id).in_(list(live)))):
            assert stored.id is not None
            live[stored.id].status = refresh_status(session, stored, counts[stored.id])


def report(engine: Engine, user: ConsoleUser, campaign_id: int) -> dict[str, Any]:
    """The campaign report (hub.campaigns.campaigns.campaign_report), parts and cancellability."""

    def _read(session: Session) -> dict[str, Any]:
        data = campaign_report(session, campaign_id)
        parts = session.execute(
            select(func.coalesce(func.sum(Message.segments), 0)).where(
                col(Message.campaign_id) == campaign_id
            )
        ).scalar_one()
        data["parts"] = int(parts or 0)
        # The report's times are ISO strings; the page shows them with the `when` macro.
        stored = session.get(Campaign, campaign_id)
        data["send_at_time"] = stored.send_at if stored else None
        data["created_time"] = stored.created_at if stored else None
        first = data["first_click_at"]
        data["first_click_time"] = datetime.fromisoformat(first) if first else None
        for stop in data["opt_outs"]:
            stop["stop_time"] = datetime.fromisoformat(stop["stop_at"])
        # What cancel_campaign accepts: nothing of it taken by a dispatcher yet.
        counts = data["counts"]
        started = any(n for s, n in counts.items() if s not in _UNSTARTED)
        data["cancellable"] = (
            data["status"] != CANCELLED and not started and counts.get(QUEUED, 0) > 0
        )
        return data

    with read_scope(engine) as session:
        campaign = own_campaign(session, user, campaign_id)
        if campaign.status in _SETTLED:
            # Nothing left to refresh: a read-only transaction will do.
            return _read(session)
    with session_scope(engine) as session:
        return _read(session)
