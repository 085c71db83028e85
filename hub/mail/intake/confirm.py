"""The confirmation e-mail: what a mail to SMS did, so nobody wonders whether it went out.

It goes only to an address the hub knows belongs to the sender: the SMTP login's own
address, or a From that a trusted relay or the hub's own checks verified. Never to a From
or Reply-To a client merely wrote: an authenticated user could otherwise make the hub
mail any text to anyone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from hub.compliance.hours import time_zones
from hub.core import i18n
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.templating import render
from hub.core.timeutil import as_utc, local_text, utcnow
from hub.errors import InvalidInput
from hub.mail import parse as mailparse
from hub.mail.intake.addresses import split_address
from hub.mail.intake.sender_auth import Verdict
from hub.mail.outbox import build_message, queue_mail
from hub.ports.mail import MailLogin
from hub.sending import submit as sending
from hub.store.models import Account, Message

# A message due later than this is told as held (a marketing or night window, a send
# time), not as going out now.
HELD_AFTER = timedelta(minutes=1)


def confirmation_address(
    login: MailLogin | None, from_addr: str | None, vouched: Verdict | None
) -> str | None:
    """Where a mail's confirmation may go: the login's name when it is an e-mail address
    (users have no other address), the verified From of a mail without login; else None."""
    if login is not None:
        try:
            split_address(login.username)
        except InvalidInput:
            return None
        return login.username.strip()
    if from_addr and vouched is not None and vouched.ok:
        return from_addr
    return None


def sent_texts(session: Session, queued: list[sending.RecipientResult]) -> list[dict[str, Any]]:
    """What the QUEUED messages really are, read back from their rows in the intake's
    transaction: each distinct text (with the opt-out mention submit added, its parts and
    encoding) and, per recipient, its credits and when it goes out (None: now; else the
    local time it is held until, in the recipient's zone, whose hours held it)."""
    ids = [r.message_id for r in queued if r.message_id]
    rows = {m.id: m for m in session.exec(select(Message).where(col(Message.id).in_(ids))).all()}
    soon = utcnow() + HELD_AFTER
    texts: dict[str, dict[str, Any]] = {}
    for r in queued:
        message = rows.get(r.message_id or "")
        if message is None:
            continue
        due = as_utc(message.due_at)
        zones = time_zones(None, message.recipient)
        group = texts.setdefault(
            message.text,
            {
                "text": message.text,
                "segments": message.segments,
                "encoding": message.encoding,
                "sends": [],
            },
        )
        group["sends"].append(
            {
                "e164": message.recipient,
                "credits": message.credits,
                "held_until": local_text(due, zones[0] if zones else "UTC") if due > soon else None,
            }
        )
    return list(texts.values())


def queue_confirmation(
    session: Session,
    config: Config,
    parsed: mailparse.ParsedMail,
    result: sending.SubmitResult,
    rejected: list[dict[str, str]],
    account_id: int,
    mail_id: int,
    to: str,
) -> None:
    """Queue the confirmation to TO (see confirmation_address) in the intake's own
    transaction (exactly one per mail)."""
    queued = [r for r in result.recipients if r.status in {"queued", "scheduled"}]
    left_out: list[dict[str, Any]] = [
        {"input": r.input, "reason": r.reason}
        for r in result.recipients
        if r.status in {"rejected", "duplicate"} and r.reason
    ] + list(rejected)
    texts = sent_texts(session, queued)
    account = session.get(Account, account_id)
    with i18n.use(i18n.account_language(account, config)):
        body = render(
            "email/confirmation.txt.j2",
            subject=parsed.subject,
            texts=texts,
            queued=queued,
            held=any(s["held_until"] for t in texts for s in t["sends"]),
            left_out=left_out,
            credits=result.credits_charged,
            balance=result.balance_after,
        )
        subject = (
            _("SMS sent: %(subject)s", subject=parsed.subject)
            if queued
            else _("SMS not sent: %(subject)s", subject=parsed.subject)
        )
    headers = {}
    if parsed.message_id:
        headers["In-Reply-To"] = f"<{parsed.message_id}>"
        headers["References"] = f"<{parsed.message_id}>"
    message = build_message(
        config.mail_out.from_address,
        to,
        subject,
        body,
        headers,
    )
    queue_mail(
        session,
        message,
        kind="confirmation",
        dedupe_key=f"confirm:{mail_id}",
        account_id=account_id,
    )
