"""Campaigns: one personalised send to lists and numbers, now or scheduled, then its report.

A campaign is a ``Campaign`` row plus **one** submission through ``hub.sending.submit``: every
recipient's text is rendered from the campaign text (a template with merge fields, see
hub.campaigns.templates), every message carries ``campaign_id``, and the whole campaign is
charged at once. The usual rules hold per message: opt-out mention, part cap, sender
rules, marketing hours, blacklist.

Life of a campaign (``Campaign.status``)::

    scheduled ──(first message claimed)──▶ sending ──(every message final)──▶ sent
        │                                    (a campaign due now starts as "sending")
        └──(cancel)──▶ cancelled

A campaign can be cancelled as long as no message of it has been claimed by a
dispatcher: every queued message is cancelled and refunded (``hub.sending.outbox.cancel_queued``),
all in one transaction. Once one message has gone out the campaign is "sending" and
cannot be cancelled any more (single queued messages still can, with
``smshub messages cancel``). A campaign is never edited: cancel it and create another.

The status is derived from its messages when it is read (``refresh_status``), so no
background job has to keep it up to date.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.campaigns import links
from hub.campaigns import templates as mt
from hub.campaigns.clicks import campaign_clicks
from hub.core import csvout
from hub.core.config import Config
from hub.core.timeutil import as_utc, utcnow
from hub.errors import ConflictError, InvalidInput, NotFound
from hub.sending.accounts import ancestors, get_account
from hub.sending.outbox import cancel_queued
from hub.sending.submit import SubmitRequest, SubmitResult, submit_in
from hub.store.models import (
    FINAL_STATUSES,
    Account,
    Campaign,
    LedgerEntry,
    LedgerKind,
    Message,
    MessageStatus,
    MessageType,
    OptOutEvent,
)

SCHEDULED = "scheduled"
SENDING = "sending"
SENT = "sent"
CANCELLED = "cancelled"
SOURCE = "campaign"


@dataclass
class CampaignResult:
    """A created campaign: its row, its submission, and who was left out and why."""

    campaign: Campaign
    submit: SubmitResult
    rejected: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The creation result as `smshub campaigns create --json` prints it."""
        c = self.campaign
        return {
            "id": c.id,
            "name": c.name,
            "status": c.status,
            "type": c.type,
            "sender": c.sender,
            "send_at": c.send_at.isoformat() if c.send_at else None,
            "recipients": c.recipients,
            "credits": c.credits,
            "segments": self.submit.segments,
            "balance_after": self.submit.balance_after,
            "rejected": self.rejected,
            "warnings": self.submit.warnings,
            "track_links": c.track_links,
        }


@dataclass(frozen=True)
class Attachment:
    """A file sent with a campaign: hosted by the hub, its short link added to the text."""

    name: str
    data: bytes


def campaign_body(
    session: Session, account: Account, text: str | None, template: str | None
) -> str:
    """The campaign's text: TEXT, or the saved TEMPLATE's (one of them), checked for syntax."""
    if (text is None) == (template is None):
        raise InvalidInput("give the campaign a text (--text) or a saved template (--template)")
    body = mt.get_template(session, account, template).text if template is not None else text
    assert body is not None
    if not body.strip():
        raise InvalidInput("the campaign text is empty; write the message")
    mt.compile_text(body)
    return body


def _with_attachments(
    session: Session,
    config: Config,
    account_id: int,
    body: str,
    attachments: Sequence[Attachment],
) -> str:
    """BODY with the short link of each of ATTACHMENTS (hosted now) added, one a line."""
    if not attachments:
        return body
    limit = links.max_file_size(config)
    urls = []
    for item in attachments:
        hosted = links.host_file(session, account_id, item.name, item.data, max_size=limit)
        urls.append(links.short_url(config, links.file_link(session, account_id, hosted).code))
    return links.with_links(body, urls)


def send_campaign_test(
    session: Session,
    config: Config,
    account: Account | str | int,
    to: str,
    *,
    text: str | None = None,
    template: str | None = None,
    type: str = MessageType.MARKETING.value,
    sender: str | None = None,
    track_links: bool | None = None,
    attachments: Sequence[Attachment] = (),
) -> SubmitResult:
    """The campaign's text, sent once, free, to the account's own number TO (see
    ``message_templates.send_test``): merge fields from the number's own contact entry,
    the attachments hosted and linked as the campaign will have them."""
    acc = get_account(session, account)
    assert acc.id is not None
    body = campaign_body(session, acc, text, template)
    body = _with_attachments(session, config, acc.id, body, attachments)
    return mt.send_test_text(
        session, config, acc, body, to, type=type, sender=sender, track_links=track_links
    )


def preview_campaign(
    session: Session,
    config: Config,
    account: Account | str | int,
    *,
    text: str | None = None,
    template: str | None = None,
    lists: Sequence[str] = (),
    numbers: Sequence[str] = (),
    type: str = MessageType.MARKETING.value,
    sender: str | None = None,
    track_links: bool | None = None,
    attachments: Sequence[Attachment] = (),
) -> dict[str, Any]:
    """What ``create_campaign`` with the same arguments would send, writing nothing: each
    recipient's text, parts and credits, and the totals (see
    ``message_templates.preview_personalized``). An attachment is checked as the send will
    check it and counted as its short link (every code has one length)."""
    acc = get_account(session, account)
    body = campaign_body(session, acc, text, template)
    limit = links.max_file_size(config)
    for item in attachments:
        links.check_file(item.name, item.data, max_size=limit)
    placeholder = links.short_url(config, "x" * links.CODE_LENGTH)
    if attachments:
        body = links.with_links(body, [placeholder] * len(attachments))
    _check_recipients(lists, numbers)
    return mt.preview_personalized(
        session,
        config,
        acc,
        body,
        lists=lists,
        numbers=numbers,
        type=type,
        sender=sender,
        track_links=track_links,
    )


def create_campaign(
    session: Session,
    config: Config,
    account: Account | str | int,
    name: str,
    *,
    text: str | None = None,
    template: str | None = None,
    lists: Sequence[str] = (),
    numbers: Sequence[str] = (),
    type: str = MessageType.MARKETING.value,
    sender: str | None = None,
    send_at: datetime | None = None,
    track_links: bool | None = None,
    attachments: Sequence[Attachment] = (),
) -> CampaignResult:
    """Create a campaign and submit its messages in SESSION's transaction (caller commits).

    Give TEXT or the name of a saved TEMPLATE; recipients are the members of LISTS, then
    NUMBERS. Recipients that cannot be sent to are reported in ``rejected``; if none is
    left, nothing is created and InvalidInput says why. Each of ATTACHMENTS is hosted and
    its short link added to the text, one a line.

    TRACK_LINKS replaces every URL of the text by a short link of each recipient's own (the
    report's clicks, click rate and devices); the hub's own short links in the text (a hosted
    file's) are copied per recipient too. None: the account's default (``track_links``).
    """
    acc = get_account(session, account)
    assert acc.id is not None
    track = acc.track_links if track_links is None else track_links
    clean_name = _checked_name(name)
    body = _with_attachments(
        session, config, acc.id, campaign_body(session, acc, text, template), attachments
    )
    _check_recipients(lists, numbers)
    now = utcnow()
    when = _send_time(send_at, now)
    future = when is not None and when > now + timedelta(seconds=1)
    texts, rejected = _texts(session, config, acc, body, lists, numbers)
    campaign = Campaign(
        account_id=acc.id,
        name=clean_name,
        text=body,
        type=type,
        sender=sender if sender is not None else acc.default_sender,
        send_at=when,
        status=SCHEDULED if future else SENDING,
        created_at=now,
        track_links=track,
    )
    result = _submit(session, config, campaign, texts, sender)
    rejected += [
        {"input": r.input, "reason": r.reason or "rejected"}
        for r in result.recipients
        if r.status == "rejected"
    ]
    if not result.accepted:
        raise _nobody(rejected)
    campaign.recipients = len(result.accepted)
    campaign.credits = result.credits_charged
    # Held messages (a future time, or marketing hours) make it scheduled: cancellable.
    held = all(r.status == "scheduled" for r in result.accepted)
    campaign.status = SCHEDULED if held else SENDING
    session.add(campaign)
    session.flush()
    return CampaignResult(campaign=campaign, submit=result, rejected=rejected)


def _submit(
    session: Session,
    config: Config,
    campaign: Campaign,
    texts: dict[str, str],
    sender: str | None,
) -> SubmitResult:
    """CAMPAIGN stored, and its TEXTS (one per recipient) submitted under its idempotency
    key; SENDER as given (None: the account's default, chosen by the submit)."""
    session.add(campaign)
    session.flush()
    assert campaign.id is not None
    return submit_in(
        session,
        config,
        SubmitRequest(
            account=campaign.account_id,
            recipients=list(texts),
            text="",
            texts=texts,
            sender=sender,
            type=campaign.type,
            send_at=campaign.send_at,
            source=SOURCE,
            idempotency_key=f"campaign:{campaign.id}",
            campaign_id=campaign.id,
            shorten_links=campaign.track_links,
        ),
    )


def _checked_name(name: str) -> str:
    clean = name.strip()
    if not clean or len(clean) > 128:
        raise InvalidInput("a campaign needs a name of 1 to 128 characters")
    return clean


def _check_recipients(lists: Sequence[str], numbers: Sequence[str]) -> None:
    if not lists and not numbers:
        raise InvalidInput("a campaign needs recipients: name a list (--list) or numbers (--to)")


def _send_time(send_at: datetime | None, now: datetime) -> datetime | None:
    """SEND_AT in UTC (None: now); a time more than a minute past is refused."""
    when = as_utc(send_at) if send_at else None
    if when is not None and when < now - timedelta(minutes=1):
        raise InvalidInput(f"--at {when.isoformat()} is in the past; give a future time")
    return when


def _texts(
    session: Session,
    config: Config,
    acc: Account,
    body: str,
    lists: Sequence[str],
    numbers: Sequence[str],
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Each recipient's text, and the recipients left out with why (InvalidInput: nobody
    left)."""
    planned = mt.plan_send(session, config, acc, body, lists, numbers)
    rejected = [{"input": p.input, "reason": p.error} for p in planned if p.error]
    texts = mt.personalized_texts(planned)
    if not texts:
        raise _nobody(rejected)
    return texts, rejected


def _nobody(rejected: list[dict[str, str]]) -> InvalidInput:
    """The error of a campaign no recipient can receive, with the first reasons why."""
    return InvalidInput(
        "no recipient can receive this campaign: "
        + "; ".join(f"{r['input']}: {r['reason']}" for r in rejected[:10])
    )


def get_campaign(
    session: Session, campaign_id: int, account: Account | str | int | None = None
) -> Campaign:
    """Campaign CAMPAIGN_ID (of ACCOUNT, when given); NotFound says how to list them."""
    campaign = session.get(Campaign, campaign_id)
    if (
        campaign is not None
        and account is not None
        and campaign.account_id != get_account(session, account).id
    ):
        campaign = None
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id} (see them with `smshub campaigns list`)")
    return campaign


def status_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """How many of the campaign's messages are in each status."""
    rows = session.exec(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(col(Message.status))
    ).all()
    return {str(status): int(n) for status, n in rows}


def refresh_status(session: Session, campaign: Campaign, counts: dict[str, int]) -> str:
    """Bring the stored status in line with the messages' (a read that may write)."""
    status = campaign.status
    total = sum(counts.values())
    if status != CANCELLED and total:
        final = sum(n for s, n in counts.items() if s in FINAL_STATUSES)
        waiting = counts.get(MessageStatus.QUEUED.value, 0)
        if counts.get(MessageStatus.CANCELLED.value, 0) == total:
            status = CANCELLED
        elif final == total:
            status = SENT
        elif waiting + counts.get(MessageStatus.CANCELLED.value, 0) < total:
            status = SENDING
    if status != campaign.status:
        campaign.status = status
        session.add(campaign)
        session.flush()
    return status


def cancel_campaign(
    session: Session, campaign_id: int, account: Account | str | int | None = None
) -> dict[str, Any]:
    """Cancel a campaign that has not started: every queued message, refunded.

    All or nothing: if a dispatcher claims one of its messages meanwhile, ConflictError
    rolls the whole cancellation back (the caller's transaction must not be committed).
    """
    campaign = get_campaign(session, campaign_id, account)
    assert campaign.id is not None
    if campaign.status == CANCELLED:
        raise ConflictError(f"campaign {campaign.id} is already cancelled")
    counts = status_counts(session, campaign.id)
    started = {
        s: n
        for s, n in counts.items()
        if s not in {MessageStatus.QUEUED.value, MessageStatus.CANCELLED.value}
    }
    if started:
        refresh_status(session, campaign, counts)
        raise ConflictError(
            f"campaign {campaign.id} has started sending ({sum(started.values())} of "
            f"{sum(counts.values())} messages already taken by the dispatcher) and can no "
            "longer be cancelled; queued messages can still be cancelled one by one with "
            "`smshub messages cancel ID`"
        )
    queued = session.exec(
        select(Message).where(
            Message.campaign_id == campaign.id, Message.status == MessageStatus.QUEUED.value
        )
    ).all()
    refunded = 0
    for message in queued:
        if not cancel_queued(session, message):
            raise ConflictError(
                f"campaign {campaign.id} started sending while it was being cancelled "
                f"(message {message.id} was just taken by the dispatcher); nothing was "
                "cancelled"
            )
        refunded += message.credits
    campaign.status = CANCELLED
    session.add(campaign)
    session.flush()
    return {"id": campaign.id, "cancelled": len(queued), "credits_refunded": refunded}


def _refunds(session: Session, campaign_id: int) -> int:
    total = session.exec(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .select_from(LedgerEntry)
        .join(Message, col(Message.id) == col(LedgerEntry.message_id))
        .where(Message.campaign_id == campaign_id, LedgerEntry.kind == LedgerKind.REFUND.value)
    ).one()
    return int(total or 0)


# The report lists this many opt-outs at most (the CSV export has every one).
REPORT_OPTOUTS = 100


def _stops(session: Session, campaign: Campaign) -> dict[str, tuple[datetime, str]]:
    """The recipients of CAMPAIGN who opted out (STOP reply, unsubscribe link, by hand) after
    it started: number → (first such opt-out, its source). An opt-out of the campaign's
    account or of a parent counts, as it blocks the account's sends."""
    owner = session.get(Account, campaign.account_id)
    scope = [a.id for a in ancestors(session, owner)] if owner else [campaign.account_id]
    start = as_utc(campaign.send_at or campaign.created_at)
    recipients = select(Message.recipient).where(Message.campaign_id == campaign.id)
    rows = session.exec(
        select(OptOutEvent.number, OptOutEvent.created_at, OptOutEvent.source)
        .where(
            col(OptOutEvent.account_id).in_(scope),
            OptOutEvent.action == "stop",
            col(OptOutEvent.created_at) >= start,
            col(OptOutEvent.number).in_(recipients),
        )
        .order_by(col(OptOutEvent.created_at), col(OptOutEvent.id))
    ).all()
    stops: dict[str, tuple[datetime, str]] = {}
    for number, at, source in rows:
        stops.setdefault(number, (as_utc(at), source))
    return stops


def campaign_view(campaign: Campaign, account_name: str | None = None) -> dict[str, Any]:
    """The campaign row as a plain dict."""
    return {
        "id": campaign.id,
        "name": campaign.name,
        "account": account_name,
        "status": campaign.status,
        "type": campaign.type,
        "sender": campaign.sender,
        "send_at": as_utc(campaign.send_at).isoformat() if campaign.send_at else None,
        "created_at": as_utc(campaign.created_at).isoformat(),
        "recipients": campaign.recipients,
        "credits": campaign.credits,
    }


def campaign_report(
    session: Session, campaign_id: int, account: Account | str | int | None = None
) -> dict[str, Any]:
    """The campaign with its counts by status, credits (charged, refunded, net) and clicks."""
    campaign = get_campaign(session, campaign_id, account)
    assert campaign.id is not None
    counts = status_counts(session, campaign.id)
    refresh_status(session, campaign, counts)
    owner = session.get(Account, campaign.account_id)
    clicks = campaign_clicks(session, campaign.id)
    refunded = _refunds(session, campaign.id)
    data = campaign_view(campaign, owner.name if owner else None)
    data.update(
        text=campaign.text,
        counts={s.value: counts.get(s.value, 0) for s in MessageStatus},
        credits_charged=campaign.credits,
        credits_refunded=refunded,
        credits_net=campaign.credits - refunded,
        track_links=campaign.track_links,
        # Clicks by people (link previews and crawlers apart, see hub.campaigns.clicks): clicks,
        # unique_clickers, click_rate (of the recipients), first_click_at, devices, os,
        # browsers, bot_clicks, bots.
        **clicks.report(campaign.recipients),
        recipients_who_clicked=clicks.clickers,
    )
    stops = _stops(session, campaign)
    data["opted_out"] = len(stops)
    # The first ones, in the order they opted out; the export lists them all.
    data["opt_outs"] = [
        {"number": number, "stop_at": at.isoformat(), "source": source}
        for number, (at, source) in list(stops.items())[:REPORT_OPTOUTS]
    ]
    return data


def list_campaigns(
    session: Session,
    account: Account | str | int | None = None,
    *,
    account_ids: Collection[int] | None = None,
    before: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Campaigns, newest first, with their current status: of ACCOUNT, or of ACCOUNT_IDS,
    else all; with ids below BEFORE; at most LIMIT (a page of the API)."""
    query = select(Campaign, Account.name).join(
        Account, col(Account.id) == col(Campaign.account_id)
    )
    if account is not None:
        query = query.where(Campaign.account_id == get_account(session, account).id)
    if account_ids is not None:
        query = query.where(col(Campaign.account_id).in_(list(account_ids)))
    if before is not None:
        query = query.where(col(Campaign.id) < before)
    query = query.order_by(col(Campaign.id).desc())
    if limit is not None:
        query = query.limit(limit)
    rows = session.exec(query).all()
    counts: dict[int, dict[str, int]] = {}
    ids = [c.id for c, _ in rows]
    for start in range(0, len(ids), 1000):
        for campaign_id, status, n in session.exec(
            select(Message.campaign_id, Message.status, func.count())
            .where(col(Message.campaign_id).in_(ids[start : start + 1000]))
            .group_by(col(Message.campaign_id), col(Message.status))
        ).all():
            counts.setdefault(int(campaign_id or 0), {})[str(status)] = int(n)
    out = []
    for campaign, owner in rows:
        refresh_status(session, campaign, counts.get(campaign.id or 0, {}))
        out.append(campaign_view(campaign, owner))
    return out


EXPORT_COLUMNS = [
    "number",
    "status",
    "reason",
    "segments",
    "credits",
    "due_at",
    "sent_at",
    "final_at",
    "clicks",
    "message_id",
    "text",
    # When the recipient opted out after the campaign (empty: still subscribed).
    "stop_at",
    # The recipient's first click (by a person, not a link preview) and its device and OS.
    "first_click_at",
    "device",
    "os",
]


def export_campaign(
    session: Session, campaign_id: int, account: Account | str | int | None = None
) -> bytes:
    """One CSV row per recipient (UTF-8 with BOM, so Excel shows accents)."""
    campaign = get_campaign(session, campaign_id, account)
    assert campaign.id is not None
    clicks = campaign_clicks(session, campaign.id).by_message
    stops = _stops(session, campaign)
    messages = session.exec(
        select(Message).where(Message.campaign_id == campaign.id).order_by(col(Message.recipient))
    ).all()
    out = io.StringIO(newline="")
    writer = csvout.writer(out)
    writer.writerow(EXPORT_COLUMNS)

    def iso(value: datetime | None) -> str:
        return as_utc(value).isoformat() if value else ""

    for m in messages:
        mine = clicks.get(m.id)
        writer.writerow(
            [
                m.recipient,
                m.status,
                m.reason or "",
                m.segments,
                m.credits,
                iso(m.due_at),
                iso(m.sent_at),
                iso(m.final_at),
                mine.clicks if mine else 0,
                m.id,
                m.text,
                stops[m.recipient][0].isoformat() if m.recipient in stops else "",
                iso(mine.first_at) if mine else "",
                mine.device if mine else "",
                mine.os if mine else "",
            ]
        )
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")
