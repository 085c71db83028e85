"""Mails intake refused for good, told to their sender and shown in the console.

An SMTP sender's server gets the 5xx and bounces it to the person. A mail taken from an
IMAP mailbox has no such path: it is moved to `Failed` and nobody would know. So the
sender of a refused IMAP mail gets the same reason by mail, but only when the hub knows
the sender is genuine (the same rule as confirmations: a trusted relay's verdict, or the
hub's own DKIM/DMARC check, see `confirmation_address`); a forged From gets nothing, or
the hub would mail any text an outsider chose to any address. Mails that are themselves
automatic (Auto-Submitted, or an empty envelope sender: a bounce) are not answered, so two
robots cannot answer each other forever.

Every refusal on an account's intake address is also kept (`RefusedIntakeMail`) for the
console, in the intake's own transaction, and pruned after `RETENTION`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, select
from sqlmodel import Session, col

from hub.core import i18n
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.templating import render
from hub.core.timeutil import utcnow
from hub.mail.intake.confirm import confirmation_address
from hub.mail.intake.received import ReceivedMail
from hub.mail.outbox import build_message, queue_mail
from hub.store.db import delete_older, table
from hub.store.models import Account, RefusedIntakeMail

# How long refused mails stay listed in the console.
RETENTION = timedelta(days=30)
# Rows deleted per transaction when pruning.
PRUNE_BATCH = 1000


def _automatic(mail: ReceivedMail) -> bool:
    """A bounce or another robot's mail: never answered."""
    if not mail.env.mail_from.strip() and mail.env.source == "smtp":
        return True
    header = mail.env.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].lower()
    for line in header.splitlines():
        if line.startswith(b"auto-submitted:"):
            return line.split(b":", 1)[1].strip() != b"no"
    return False


def notice_address(mail: ReceivedMail) -> str | None:
    """Where the refusal of MAIL may be told: an IMAP mail's verified sender, else None
    (an SMTP sender's own server tells it)."""
    if mail.env.source != "imap" or mail.parsed is None or _automatic(mail):
        return None
    return confirmation_address(mail.env.login, mail.parsed.from_addr, mail.vouched)


def record(
    session: Session, config: Config, mail: ReceivedMail, account_id: int, reply: str
) -> RefusedIntakeMail:
    """Keep the refusal of MAIL (REPLY, a 5xx) on ACCOUNT_ID's intake address, and queue
    its notice to a verified IMAP sender, in SESSION's transaction."""
    parsed = mail.parsed
    sender = (parsed.from_addr if parsed else None) or mail.env.mail_from
    subject = parsed.subject if parsed else ""
    to = notice_address(mail) if config.mail_out.enabled else None
    if to is not None:
        # In the account's language, like the confirmations (the reason itself stays the
        # hub's SMTP text: the same words a bounce would carry).
        with i18n.use(i18n.account_language(session.get(Account, account_id), config)):
            body = render("email/refusal.txt.j2", subject=subject, reply=reply)
            title = _("SMS not sent: %(subject)s", subject=subject)
        headers = {}
        if parsed is not None and parsed.message_id:
            headers["In-Reply-To"] = f"<{parsed.message_id}>"
            headers["References"] = f"<{parsed.message_id}>"
        message = build_message(config.mail_out.from_address, to, title[:200], body, headers)
        # One notice per mail, however often the mailbox hands it over.
        if (
            queue_mail(
                session,
                message,
                kind="refusal",
                dedupe_key=f"refusal:{account_id}:{mail.sha256}",
                account_id=account_id,
            )
            is None
        ):
            to = None
    row = RefusedIntakeMail(
        account_id=account_id,
        door=mail.env.source[:8],
        sender=sender[:255],
        subject=subject[:500],
        message_id=(parsed.message_id if parsed else None),
        reason=reply[:500],
        notified=(to or "")[:255],
    )
    session.add(row)
    return row


def recent(session: Session, account_ids: list[int], limit: int = 100) -> list[RefusedIntakeMail]:
    """The latest refused mails of ACCOUNT_IDS, newest first."""
    return list(
        session.exec(
            select(RefusedIntakeMail)  # type: ignore[call-overload]
            .where(col(RefusedIntakeMail.account_id).in_(account_ids))
            .order_by(col(RefusedIntakeMail.refused_at).desc(), col(RefusedIntakeMail.id).desc())
            .limit(limit)
        ).scalars()
    )


def prune(engine: Engine, older_than: timedelta = RETENTION) -> int:
    """Delete refusals older than OLDER_THAN, PRUNE_BATCH per transaction."""
    refused_at = table(RefusedIntakeMail).c.refused_at
    return delete_older(engine, refused_at, utcnow() - older_than, batch=PRUNE_BATCH)
