"""Mail the hub sends: a durable queue in SQL, delivered through a MailSender (a port,
:mod:`hub.ports.mail`, that connectors implement).

Queuing is a row written in the caller's transaction (so a confirmation exists exactly when
the intake it confirms does); a worker sends due rows and retries failures with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.policy import default
from email.utils import formatdate, make_msgid
from functools import partial

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from hub.core.timeutil import utcnow
from hub.core.workers import PollingWorker
from hub.errors import PermanentMailError
from hub.ports.mail import MailSender
from hub.store import claims
from hub.store.claims import Lease
from hub.store.db import session_scope
from hub.store.models import OutgoingMail

log = logging.getLogger("smshub.mailout")

MAX_ATTEMPTS = 10
# A claimed mail is this worker's for this long unless renewed (every third of it while the
# worker sends); a mail is sent only while at least half of it is left. The hub passes
# [dispatcher] claim_lease_seconds, so a dead instance's mails come back as its SMS do.
CLAIM_LEASE = timedelta(minutes=2)


def build_message(
    sender: str, to: str, subject: str, body: str, headers: dict[str, str] | None = None
) -> EmailMessage:
    """A plain-text UTF-8 mail with Date and Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "smshub.local")
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    return msg


def queue_mail(
    session: Session,
    message: EmailMessage,
    *,
    kind: str,
    dedupe_key: str,
    account_id: int | None = None,
) -> OutgoingMail | None:
    """Queue MESSAGE in SESSION's transaction; None if the same key was queued before."""
    existing = session.exec(
        select(OutgoingMail.id).where(OutgoingMail.dedupe_key == dedupe_key)
    ).first()
    if existing is not None:
        return None
    row = OutgoingMail(
        account_id=account_id,
        kind=kind,
        dedupe_key=dedupe_key,
        recipient=str(message["To"]),
        subject=str(message["Subject"] or "")[:500],
        raw=message.as_bytes(policy=SMTP_POLICY),
    )
    session.add(row)
    session.flush()
    return row


class MailOutbox(PollingWorker):
    """Sends queued mail through a MailSender; one worker per process, and the workers of
    several processes claim rows (hub.store.claims) so each mail goes out once."""

    task_name = "mail-outbox"

    def __init__(
        self,
        engine: Engine,
        sender: MailSender,
        poll_interval: float = 2.0,
        lease: timedelta = CLAIM_LEASE,
    ) -> None:
        super().__init__(poll_interval)
        self.engine = engine
        self.sender = sender
        self.lease = lease

    async def _round(self) -> bool:
        # Mails went out: more may be due (a batch is LIMIT); none: wait.
        return await self.send_due() > 0

    def _due(self, limit: int) -> tuple[list[OutgoingMail], Lease]:
        """Claim up to LIMIT due mails (another worker skips them until the lease ends)."""
        with session_scope(self.engine) as session:
            query = (
                select(OutgoingMail)
                .where(OutgoingMail.status == "pending")
                .order_by(col(OutgoingMail.id))
                .limit(limit)
            )
            rows, lease = claims.claim_due(session, query, OutgoingMail, self.lease)
            return rows, lease

    def _mark(self, mail_id: int, error: str | None, permanent: bool = False) -> None:
        with session_scope(self.engine) as session:
            row = session.get(OutgoingMail, mail_id)
            if row is None:
                return
            row.attempts += 1
            if error is None:
                row.status = "sent"
                row.sent_at = utcnow()
                row.last_error = ""
            else:
                row.last_error = error[:500]
                if permanent or row.attempts >= MAX_ATTEMPTS:
                    row.status = "failed"
                else:
                    row.due_at = utcnow() + timedelta(seconds=min(30 * 2**row.attempts, 3600))
            session.add(row)

    async def send_due(self, limit: int = 10) -> int:
        """Send the due mails once (up to LIMIT); returns how many were delivered."""
        rows, lease = await asyncio.to_thread(self._due, limit)
        if not rows:
            return 0
        delivered = 0
        # The claimed mails not yet marked are renewed while the others are sent.
        async with claims.Holding(
            self.engine, OutgoingMail, (r.id for r in rows if r.id is not None), lease
        ) as held:
            for row in rows:
                assert row.id is not None
                if self._stopping or not lease.fresh():
                    # A stop, or a lease not renewed in time: the rest go back to the queue
                    # rather than risk a mail another worker may have taken over meanwhile.
                    await held.release(held.unsettled)
                    break
                message = message_from_bytes(row.raw, policy=default)
                assert isinstance(message, EmailMessage)
                mail_id = row.id
                try:
                    await self.sender.send(message)
                except PermanentMailError as exc:
                    log.warning("mail %d to %s refused for good: %s", row.id, row.recipient, exc)
                    await held.settle(mail_id, partial(self._mark, mail_id, str(exc), True))
                except Exception as exc:
                    log.warning(
                        "mail %d to %s not sent yet (%s); will retry", row.id, row.recipient, exc
                    )
                    error = f"{type(exc).__name__}: {exc}"
                    await held.settle(mail_id, partial(self._mark, mail_id, error))
                else:
                    await held.settle(mail_id, partial(self._mark, mail_id, None))
                    delivered += 1
        return delivered
