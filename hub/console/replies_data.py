"""Conversations for the console's Replies pages: who wrote, the thread with one number, and
the answer, which goes out exactly as an e-mail answer to the forwarded SMS would.

A conversation is (account, phone number) with at least one inbound SMS. There is no
"read" flag in the schema: a conversation is *waiting* when nobody answered it (by mail,
console, API...) after its last inbound SMS; automatic SMS (auto-reply, opt-out notice,
reminders) are not answers.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.core.timeutil import as_utc
from hub.errors import InvalidInput, NotFound, ReplyRefused
from hub.mail.intake.replies import answer_request
from hub.sending import submit as sending
from hub.store.models import Account, InboundMessage, Message

# Sources of SMS the hub sends by itself: they do not answer anybody.
AUTOMATIC_SOURCES = ("autoreply", "optout", "calendar")
_DIGITS = re.compile(r"^[1-9]\d{5,14}$")
# InboundMessage.sender's length.
_MAX_SENDER = 32
# Inbound rows read per round while looking for the next conversations of a page.
_CHUNK = 200
# Rounds per page at most: a number that wrote thousands of times must not make a page slow;
# the page then ends early and "Older" goes on from where the scan stopped.
_MAX_ROUNDS = 25


@dataclass
class Conversation:
    account_id: int
    account: str
    number: str
    last_id: int
    last_text: str
    last_at: datetime
    handling: str
    forwarded_to: str
    waiting: bool = True

    @property
    def digits(self) -> str:
        return url_key(self.number)


@dataclass
class ThreadItem:
    direction: str  # in | out
    at: datetime
    text: str
    status: str = ""  # outbound: the message's status
    source: str = ""  # outbound: the door it came through
    message_id: str = ""
    handling: str = ""  # inbound: what the hub did with it


def url_key(sender: str) -> str:
    """How a conversation's number appears in its URL: '+33612345678' → '33612345678'; a
    sender that is not a phone number (an alphanumeric 'LaPoste', a short code '36180'),
    which cannot be told apart from digits, → '~' and the sender, URL-quoted."""
    if sender.startswith("+") and _DIGITS.match(sender[1:]):
        return sender[1:]
    return "~" + quote(sender, safe="")


def number_from_digits(digits: str) -> str:
    """The sender a conversation URL names (the reverse of ``url_key``); NotFound for
    anything else."""
    if digits.startswith("~") and 1 < len(digits) <= _MAX_SENDER + 1:
        return digits[1:]
    if not _DIGITS.match(digits):
        raise NotFound(f"{digits!r} is not a phone number in international form (33612345678)")
    return "+" + digits


def conversations(
    session: Session, account_ids: Collection[int], before: int | None, limit: int
) -> tuple[list[Conversation], int | None]:
    """Conversations of ACCOUNT_IDS, latest inbound SMS first, after the cursor BEFORE (an
    inbound id); with the cursor of the next page (None on the last one).

    Keyset on the inbound id: each round reads the next inbound rows down from the cursor and
    keeps the first row of each (account, number); a pair whose newest SMS is at or above
    BEFORE was on an earlier page.
    """
    if not account_ids:
        return [], None
    found: list[InboundMessage] = []
    seen: set[tuple[int, str]] = set()
    cursor = before
    exhausted = False
    for _ in range(_MAX_ROUNDS):
        query = select(InboundMessage).where(col(InboundMessage.account_id).in_(account_ids))
        if cursor is not None:
            query = query.where(col(InboundMessage.id) < cursor)
        rows = session.exec(query.order_by(col(InboundMessage.id).desc()).limit(_CHUNK)).all()
        fresh = [r for r in rows if (r.account_id, r.sender) not in seen]
        shown_before = _shown_before(session, account_ids, fresh, before)
        for row in fresh:
            key = (int(row.account_id or 0), row.sender)
            if key in seen:
                continue
            seen.add(key)
            if key not in shown_before:
                found.append(row)
            if len(found) > limit:
                break
        if len(found) > limit:
            break
        if len(rows) < _CHUNK:
            exhausted = True
            break
        cursor = rows[-1].id
    page = found[:limit]
    if len(found) > limit:
        next_cursor = page[-1].id
    elif exhausted:
        next_cursor = None
    else:
        # Stopped early (rounds used up): go on from where the scan ended.
        next_cursor = cursor
    return _describe(session, page), next_cursor


def _shown_before(
    session: Session,
    account_ids: Collection[int],
    rows: list[InboundMessage],
    before: int | None,
) -> set[tuple[int, str]]:
    if before is None or not rows:
        return set()
    newest = session.exec(
        select(InboundMessage.account_id, InboundMessage.sender, func.max(InboundMessage.id))
        .where(
            col(InboundMessage.sender).in_({r.sender for r in rows}),
            col(InboundMessage.account_id).in_(account_ids),
        )
        .group_by(col(InboundMessage.account_id), col(InboundMessage.sender))
    ).all()
    return {(int(a or 0), s) for a, s, top in newest if top is not None and top >= before}


def _describe(session: Session, rows: list[InboundMessage]) -> list[Conversation]:
    if not rows:
        return []
    ids = {int(r.account_id or 0) for r in rows}
    names = dict(
        session.exec(select(Account.id, Account.name).where(col(Account.id).in_(ids))).all()
    )
    answered = {
        (a, n): as_utc(at)
        for a, n, at in session.exec(
            select(Message.account_id, Message.recipient, func.max(Message.created_at))
            .where(
                col(Message.recipient).in_({r.sender for r in rows}),
                col(Message.account_id).in_(ids),
                col(Message.source).not_in(AUTOMATIC_SOURCES),
            )
            .group_by(col(Message.account_id), col(Message.recipient))
        ).all()
        if at is not None
    }
    result = []
    for r in rows:
        account_id = int(r.account_id or 0)
        last_out = answered.get((account_id, r.sender))
        result.append(
            Conversation(
                account_id=account_id,
                account=names.get(account_id, "?"),
                number=r.sender,
                last_id=int(r.id or 0),
                last_text=r.text,
                last_at=as_utc(r.received_at),
                handling=r.handling,
                forwarded_to=r.forwarded_to,
                waiting=last_out is None or last_out < as_utc(r.received_at),
            )
        )
    return result


def thread_accounts(session: Session, account_ids: Collection[int], number: str) -> list[int]:
    """The accounts (of ACCOUNT_IDS) NUMBER wrote to, the one of its last SMS first."""
    rows = session.exec(
        select(InboundMessage.account_id, func.max(InboundMessage.id))
        .where(InboundMessage.sender == number, col(InboundMessage.account_id).in_(account_ids))
        .group_by(col(InboundMessage.account_id))
    ).all()
    return [int(a) for a, _ in sorted(rows, key=lambda r: -(r[1] or 0)) if a is not None]


def default_account(session: Session, account_ids: Collection[int], number: str) -> int:
    """The account a thread with NUMBER shows when none is named: that of its last inbound
    SMS, else that of the last SMS sent to it; NotFound when it is none of ACCOUNT_IDS'."""
    talked = thread_accounts(session, account_ids, number)
    if talked:
        return talked[0]
    last = session.exec(
        select(Message.account_id)
        .where(Message.recipient == number, col(Message.account_id).in_(account_ids))
        .order_by(col(Message.created_at).desc())
        .limit(1)
    ).first()
    if last is None:
        raise NotFound(f"no conversation with {number} in your accounts")
    return int(last)


def thread(
    session: Session, account_id: int, number: str, before: datetime | None, limit: int
) -> tuple[list[ThreadItem], datetime | None]:
    """The LIMIT latest SMS to and from NUMBER on ACCOUNT_ID older than BEFORE, oldest first;
    with the cursor of the older ones (None when there are none)."""
    inbound_q = select(InboundMessage).where(
        InboundMessage.sender == number, InboundMessage.account_id == account_id
    )
    outbound_q = select(Message).where(
        Message.recipient == number, Message.account_id == account_id
    )
    if before is not None:
        inbound_q = inbound_q.where(col(InboundMessage.received_at) < before)
        outbound_q = outbound_q.where(col(Message.created_at) < before)
    inbound = session.exec(
        inbound_q.order_by(col(InboundMessage.received_at).desc()).limit(limit + 1)
    ).all()
    outbound = session.exec(outbound_q.order_by(col(Message.created_at).desc()).limit(limit + 1))
    items = [
        ThreadItem("in", as_utc(r.received_at), r.text, handling=r.handling) for r in inbound
    ] + [
        ThreadItem("out", as_utc(m.created_at), m.text, m.status, m.source, m.id)
        for m in outbound.all()
    ]
    items.sort(key=lambda i: i.at, reverse=True)
    page = items[:limit]
    older = page[-1].at if len(items) > limit else None
    return list(reversed(page)), older


def answer(
    session: Session, account: Account, number: str, text: str, key: str
) -> sending.SubmitRequest:
    """The SMS answering NUMBER's last SMS to ACCOUNT, built as a mail answer's is (same
    account, sender rules, source and conversation); InvalidInput when it cannot go out."""
    inbound = session.exec(
        select(InboundMessage)
        .where(InboundMessage.sender == number, InboundMessage.account_id == account.id)
        .order_by(col(InboundMessage.id).desc())
        .limit(1)
    ).first()
    if inbound is None:
        raise InvalidInput(
            f"{number} has not written to account {account.name}, so there is nothing to "
            "answer; send it a new SMS from the Send page instead"
        )
    try:
        return answer_request(inbound, text, f"console:{key}")
    except ReplyRefused as exc:
        raise InvalidInput(str(exc)) from None
