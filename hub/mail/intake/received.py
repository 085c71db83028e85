"""A mail as a door received it, and what can be read from it without the database.

Parsing, the subject's grammar, the attachments and the trusted relays' verdict on the
From depend on the mail alone: they are read before the mail's group transaction (which
then holds its lock the shorter), on the event loop for a small mail. A mail that came
from no trusted relay is checked by the hub itself (``check_sender``: DNS, so in a worker
thread, still before the transaction).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import dns.resolver

from hub.campaigns import links
from hub.core.config import Config
from hub.mail import parse as mailparse
from hub.mail.intake.direct_auth import verify_sender
from hub.mail.intake.sender_auth import Verdict, relay_ids_for, relay_verdict
from hub.ports.mail import MailEnvelope

log = logging.getLogger("smshub.intake")


@dataclass
class ReceivedMail:
    """A mail as received, with what was read from it without the database (``receive``)."""

    env: MailEnvelope
    sha256: str
    parsed: mailparse.ParsedMail | None
    unreadable: Exception | None = None
    subject: mailparse.SubjectParts | None = None
    # (files to host, problems, signature logos) as links.check_attachments sorts them, or
    # what reading them raised (a 451, if the mail gets as far as its attachments).
    attachments: tuple[list[links.MailAttachment], list[str], list[str]] | Exception = field(
        default_factory=lambda: ([], [], [])
    )
    # Whether the From is genuine, for a mail without SMTP AUTH: the trusted relay's verdict,
    # or the hub's own (None until ``check_sender`` ran).
    vouched: Verdict | None = field(
        default_factory=lambda: Verdict("fail", "the mail has no usable From address")
    )

    @property
    def dedupe_key(self) -> str:
        """What makes two deliveries the same mail: its Message-ID, else its hash."""
        return (self.parsed.message_id if self.parsed else None) or self.sha256


def receive(config: Config, env: MailEnvelope) -> ReceivedMail:
    """Read what needs no database from ENV (CPU only; never raises)."""
    sha = hashlib.sha256(env.raw).hexdigest()
    try:
        parsed = mailparse.parse_mail(env.raw)
        mail = ReceivedMail(env, sha, parsed, subject=mailparse.parse_subject(parsed.subject))
        if env.login is None and parsed.from_addr and "@" in parsed.from_addr:
            relays = env.authserv_ids or (
                relay_ids_for(config.smtp.trusted_relays, env.peer) if env.peer else ()
            )
            mail.vouched = (
                relay_verdict(parsed.get_header("Authentication-Results"), parsed.from_addr, relays)
                if relays
                else None  # not through a trusted relay: check_sender does the checks
            )
    except Exception as exc:  # this mail only is answered 451, when it is taken in
        return ReceivedMail(env, sha, None, exc)
    try:
        mail.attachments = links.check_attachments(
            config, links.mail_attachments(env.raw, parsed.mime)
        )
    except Exception as exc:
        mail.attachments = exc
    return mail


def check_sender(mail: ReceivedMail, resolver: dns.resolver.Resolver) -> None:
    """Check the From of a mail that no trusted relay vouched for (DKIM, SPF, DMARC over
    DNS: blocking, so in a worker thread); a no-op for every other mail."""
    if mail.vouched is not None or mail.parsed is None or not mail.parsed.from_addr:
        return
    env = mail.env
    try:
        mail.vouched = verify_sender(
            env.raw,
            mail.parsed.from_addr,
            resolver,
            peer=env.peer if env.source == "smtp" else "",
            helo=env.helo,
            mail_from=env.mail_from,
        )
    except Exception:
        # A mail that breaks the checkers is refused for what it is, not retried for days.
        log.exception("checking the sender %s failed", mail.parsed.from_addr)
        mail.vouched = Verdict("fail", "the mail could not be checked (DKIM, SPF, DMARC)")
