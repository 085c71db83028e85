"""Clicks on short links: who a browser string says clicked, and a campaign's click report.

The User-Agent is read with ua-parser (the maintained uap-core rules, shipped in
``ua-parser-builtins``), never with regexes of our own: its device, OS and browser
families are stored with each click, so reports group on columns instead of re-parsing.

Bots: link previews (WhatsApp, iMessage's and Facebook's fetchers, Slack, Telegram...) and
crawlers open a link without anyone reading it. ua-parser gives them the device family
``Spider``; such a click is kept (and shown apart in the reports) but is not a person's
click: it counts in no click total, unique clicker, click rate or first click time. A HEAD
request is not recorded at all (hub.api.links).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ua_parser
from sqlalchemy import func, select
from sqlmodel import Session, col

from hub.core.timeutil import as_utc
from hub.store.models import LinkClick, Message, ShortLink

# What a stored User-Agent keeps (the column's size): the parse reads no more either, so one
# click costs bounded work whatever a client sends.
MAX_USER_AGENT = 500
SPIDER = "Spider"
# Shown for a family ua-parser could not name (an empty or unknown browser string).
UNKNOWN = "Other"
# The report lists this many families per breakdown; the rest are summed as "others".
TOP_FAMILIES = 10
_FAMILY = 64


@dataclass(frozen=True)
class Agent:
    """A browser string as ua-parser reads it."""

    device: str
    os: str
    browser: str
    bot: bool


def parse_agent(user_agent: str) -> Agent:
    """The device, OS and browser families of USER_AGENT (ua-parser's "Other" when it does
    not know), and whether it is a bot (device family "Spider")."""
    raw = user_agent[:MAX_USER_AGENT]
    if not raw.strip():
        return Agent(UNKNOWN, UNKNOWN, UNKNOWN, bot=False)
    result = ua_parser.parse(raw)
    device = (result.device.family if result.device else "") or UNKNOWN
    os_family = (result.os.family if result.os else "") or UNKNOWN
    browser = (result.user_agent.family if result.user_agent else "") or UNKNOWN
    return Agent(device[:_FAMILY], os_family[:_FAMILY], browser[:_FAMILY], bot=device == SPIDER)


def new_click(link: ShortLink, user_agent: str, agent: Agent | None = None) -> LinkClick:
    """A click on LINK from USER_AGENT (not added to any session), with its parsed families
    (AGENT: USER_AGENT already parsed, outside the click's transaction)."""
    assert link.id is not None
    agent = agent or parse_agent(user_agent)
    return LinkClick(
        link_id=link.id,
        number=link.number,
        user_agent=user_agent[:MAX_USER_AGENT],
        device_family=agent.device,
        os_family=agent.os,
        browser_family=agent.browser,
        bot=agent.bot,
    )


# -- a campaign's clicks --------------------------------------------------------------------
@dataclass
class RecipientClicks:
    """One recipient's (one message's) clicks by people."""

    clicks: int = 0
    first_at: datetime | None = None
    # Of the first click: a person's phone, for the per-family clicker counts and the export.
    device: str = ""
    os: str = ""
    browser: str = ""


@dataclass
class CampaignClicks:
    """The clicks on a campaign's per-recipient links, people and bots apart."""

    by_message: dict[str, RecipientClicks] = field(default_factory=dict)
    bot_clicks: int = 0
    first_at: datetime | None = None
    devices: Counter[str] = field(default_factory=Counter)
    systems: Counter[str] = field(default_factory=Counter)
    browsers: Counter[str] = field(default_factory=Counter)
    bots: Counter[str] = field(default_factory=Counter)

    @property
    def clicks(self) -> int:
        return sum(r.clicks for r in self.by_message.values())

    @property
    def clickers(self) -> int:
        return len(self.by_message)

    def rate(self, recipients: int) -> float:
        """Unique clickers per recipient (0.0 to 1.0)."""
        return round(self.clickers / recipients, 4) if recipients else 0.0

    def report(self, recipients: int) -> dict[str, Any]:
        """The click part of a campaign report (hub.campaigns.campaigns.campaign_report)."""
        return {
            "clicks": self.clicks,
            "unique_clickers": self.clickers,
            "click_rate": self.rate(recipients),
            "first_click_at": self.first_at.isoformat() if self.first_at else None,
            "devices": _breakdown(self.devices, self._clickers("device")),
            "os": _breakdown(self.systems, self._clickers("os")),
            "browsers": _breakdown(self.browsers, self._clickers("browser")),
            "bot_clicks": self.bot_clicks,
            "bots": _breakdown(self.bots, None),
        }

    def _clickers(self, what: str) -> Counter[str]:
        # A recipient counts once, for the family of their first click.
        return Counter(getattr(r, what) for r in self.by_message.values())


def _breakdown(counts: Counter[str], clickers: Counter[str] | None) -> list[dict[str, Any]]:
    """The most frequent families (clicks, and recipients whose first click it was), then
    the rest summed as "others"."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    rows: list[dict[str, Any]] = []
    for name, clicks in ranked[:TOP_FAMILIES]:
        row: dict[str, Any] = {"name": name, "clicks": clicks}
        if clickers is not None:
            row["clickers"] = clickers.get(name, 0)
        rows.append(row)
    rest = ranked[TOP_FAMILIES:]
    if rest:
        row = {"name": "others", "clicks": sum(c for _, c in rest)}
        if clickers is not None:
            row["clickers"] = sum(clickers.get(n, 0) for n, _ in rest)
        rows.append(row)
    return rows


def campaign_clicks(session: Session, campaign_id: int) -> CampaignClicks:
    """Clicks on the per-recipient links of CAMPAIGN_ID's messages: one grouped query, whose
    rows are bounded by messages times families, not by clicks."""
    # SQLAlchemy's select: sqlmodel's is typed for at most four columns.
    rows = session.execute(
        select(
            col(ShortLink.message_id),
            col(LinkClick.bot),
            col(LinkClick.device_family),
            col(LinkClick.os_family),
            col(LinkClick.browser_family),
            func.count(col(LinkClick.id)),
            func.min(col(LinkClick.clicked_at)),
        )
        .select_from(LinkClick)
        .join(ShortLink, col(ShortLink.id) == col(LinkClick.link_id))
        .join(Message, col(Message.id) == col(ShortLink.message_id))
        .where(col(Message.campaign_id) == campaign_id)
        .group_by(
            col(ShortLink.message_id),
            col(LinkClick.bot),
            col(LinkClick.device_family),
            col(LinkClick.os_family),
            col(LinkClick.browser_family),
        )
    ).all()
    out = CampaignClicks()
    for message_id, bot, device, os_family, browser, count, first in rows:
        n = int(count)
        device, os_family = device or UNKNOWN, os_family or UNKNOWN
        if bot:
            out.bot_clicks += n
            out.bots[browser or UNKNOWN] += n
            continue
        at = as_utc(first)
        out.devices[device] += n
        out.systems[os_family] += n
        out.browsers[browser or UNKNOWN] += n
        mine = out.by_message.setdefault(str(message_id), RecipientClicks())
        mine.clicks += n
        if mine.first_at is None or at < mine.first_at:
            mine.first_at = at
            mine.device, mine.os, mine.browser = device, os_family, browser or UNKNOWN
        if out.first_at is None or at < out.first_at:
            out.first_at = at
    return out
