"""What the intake answers: an outcome per mail, the SMTP reply of a refusal, and the reply
of a mail whose intake raised. Every reply here is one ASCII line (``smtp_line``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hub.errors import HubError, TemporaryFailure
from hub.mail import parse as mailparse
from hub.mail.intake.received import ReceivedMail
from hub.mail.intake.smtp_text import shown, smtp_line
from hub.sending import submit as sending
from hub.store.models import IntakeAddress

log = logging.getLogger("smshub.intake")


@dataclass
class IntakeOutcome:
    """What happened to one mail; ``reply`` is the SMTP answer for the sender's server."""

    accepted: bool
    reply: str
    result: sending.SubmitResult | None = None
    mail_id: int | None = None
    duplicate: bool = False
    intake: IntakeAddress | None = None
    parsed: mailparse.ParsedMail | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # What every door answers goes out as one ASCII line, whatever the mail quoted.
        self.reply = smtp_line(self.reply)

    @property
    def permanent(self) -> bool:
        """A 5xx: the sender's server bounces it to the person, who learns why."""
        return self.reply.startswith("5")


class Rejected(Exception):
    """A mail refused with an SMTP reply."""

    def __init__(self, reply: str) -> None:
        reply = smtp_line(reply)
        super().__init__(reply)
        self.reply = reply


def one_line(text: str, limit: int = 400) -> str:
    """TEXT on one line, cut to LIMIT characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


TEMPORARY = "451 4.3.0 temporary failure; please try again later"
# What a retry can fix: the database unreachable, busy or locked, a lookup that timed out.
_RETRYABLE = (OperationalError, PoolTimeout, TimeoutError, ConnectionError, TemporaryFailure)
# What the mail itself causes (its bytes, its structure): the same mail fails again.
_CONTENT = (DataError, UnicodeError, ValueError, LookupError, RecursionError)


def failure_reply(exc: BaseException) -> str:
    """The SMTP answer for a mail whose intake raised EXC (nothing was committed for it).

    4xx only when a retry can succeed; a problem of the mail's content is a 5xx that says
    what it is, or the sender's server would retry it for days. Anything else is the hub's
    own fault: 451, so the mail waits at the sender's server until it is fixed."""
    if isinstance(exc, _RETRYABLE):
        return TEMPORARY
    if isinstance(exc, HubError):
        return smtp_line(f"554 5.6.0 {one_line(str(exc))}")
    if isinstance(exc, _CONTENT):
        return (
            f"554 5.6.0 the mail cannot be read ({type(exc).__name__}); "
            "check its headers and MIME structure"
        )
    return TEMPORARY


def already_received(mail_id: int) -> IntakeOutcome:
    """The 250 of a mail taken in before (stored as MAIL_ID): nothing is sent again."""
    return IntakeOutcome(
        accepted=True,
        duplicate=True,
        mail_id=mail_id,
        reply=f"250 2.0.0 already received (mail {mail_id}); not sent again",
    )


def refused(mail: ReceivedMail, exc: Rejected) -> IntakeOutcome:
    """The outcome of MAIL refused with EXC's reply (logged)."""
    log.info("mail from %s refused: %s", shown(mail.env.mail_from), exc.reply)
    return IntakeOutcome(accepted=False, reply=exc.reply)
