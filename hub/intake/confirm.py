"""The confirmation e-mail: what a mail to SMS did, so nobody wonders whether it went out."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from hub import mailparse, sending
from hub.config import Config
from hub.mailout import build_message, queue_mail
from hub.templating import render


def queue_confirmation(
    session: Session,
    config: Config,
    parsed: mailparse.ParsedMail,
    result: sending.SubmitResult,
    rejected: list[dict[str, str]],
    account_id: int,
    mail_id: int,
    fallback_to: str,
) -> None:
    """Queue the confirmation in the intake's own transaction (exactly one per mail)."""
    to = parsed.reply_to[0] if parsed.reply_to else parsed.from_addr or fallback_to
    if not to:
        return
    queued = [r for r in result.recipients if r.status in {"queued", "scheduled"}]
    left_out: list[dict[str, Any]] = [
        {"input": r.input, "reason": r.reason}
        for r in result.recipients
        if r.status in {"rejected", "duplicate"} and r.reason
    ] + list(rejected)
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
    headers = {}
    if parsed.message_id:
        headers["In-Reply-To"] = f"<{parsed.message_id}>"
        headers["References"] = f"<{parsed.message_id}>"
    message = build_message(
        config.mail_out.from_address,
        to,
        f"SMS sent: {parsed.subject}" if queued else f"SMS not sent: {parsed.subject}",
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
