"""The confirmation e-mail: what a mail to SMS did, so nobody wonders whether it went out.

It goes only to an address the hub knows belongs to the sender: the SMTP login's own
address, or a From that a trusted relay or the hub's own checks verified. Never to a From
or Reply-To a client merely wrote: an authenticated user could otherwise make the hub
mail any text to anyone.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from hub import i18n, mailparse, sending
from hub.config import Config
from hub.errors import InvalidInput
from hub.i18n import gettext as _
from hub.intake.addresses import MailLogin, split_address
from hub.intake.sender_auth import Verdict
from hub.mailout import build_message, queue_mail
from hub.models import Account
from hub.templating import render


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
    account = session.get(Account, account_id)
    with i18n.use(i18n.account_language(account, config)):
        body = render(
            "email/confirmation.txt.j2",
            subject=parsed.subject,
            text=parsed.text,
            segments=result.segments,
            encoding=result.encoding,
            queued=queued,
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
