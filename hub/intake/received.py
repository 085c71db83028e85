"""A mail as a door received it, and what can be read from it without the database.

Parsing, the subject's grammar, the attachments and the trusted relays' verdict on the
From depend on the mail alone: they are read before the mail's group transaction (which
then holds its lock the shorter), on the event loop for a small mail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from hub import links, mailparse
from hub.config import Config
from hub.intake.addresses import MailLogin
from hub.intake.sender_auth import from_is_authenticated


@dataclass(frozen=True)
class MailEnvelope:
    """A mail as a door received it."""

    raw: bytes
    mail_from: str
    rcpt_to: list[str]
    login: MailLogin | None = None
    source: str = "smtp"


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
    # (ok, why) of the trusted relays' verdict on the From, for a mail without SMTP AUTH.
    vouched: tuple[bool, str] = (False, "")

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
        if env.login is None:
            mail.vouched = from_is_authenticated(
                parsed.get_header("Authentication-Results"),
                parsed.from_addr,
                config.smtp.trusted_relays,
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
