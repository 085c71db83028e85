"""Who may send through an intake address: the SMTP login of its account (or a parent
account), else, without a login, an allowed sender whose From is verified (a trusted
relay's verdict or the hub's own DKIM/SPF/DMARC check). A mailbox door has no login."""

from __future__ import annotations

from sqlmodel import Session

from hub.core.i18n import gettext
from hub.mail.intake.addresses import sender_allowed
from hub.mail.intake.outcome import Rejected, one_line
from hub.mail.intake.received import ReceivedMail
from hub.mail.intake.sender_auth import Verdict
from hub.ports.mail import MailLogin
from hub.sending.accounts import ancestors
from hub.store.models import Account, IntakeAddress


def authorize(session: Session, mail: ReceivedMail, intake: IntakeAddress) -> None:
    """Raise Rejected unless MAIL may send through INTAKE."""
    env, parsed = mail.env, mail.parsed
    assert parsed is not None
    if env.login is not None:
        if not may_use(session, env.login, intake):
            raise Rejected(
                "550 5.7.1 "
                + gettext("%(user)s may not send through this address", user=env.login.username)
            )
        return
    _require_allowed_senders(env.source, intake)
    if not sender_allowed(intake, parsed.from_addr):
        raise Rejected(
            "550 5.7.1 "
            + gettext(
                "%(sender)s is not allowed to send SMS through this address",
                sender=parsed.from_addr or gettext("this sender"),
            )
        )
    raise_unverified(mail.vouched, parsed.from_addr)


def _require_allowed_senders(source: str, intake: IntakeAddress) -> None:
    """A 530 when INTAKE takes only SMTP AUTH users (a mail without a login)."""
    if not (intake.require_auth or not intake.allowed_senders.strip()):
        return
    if source == "imap":
        # Anyone can write to a mailbox: only allowed senders vouched for by a trusted
        # relay can use it.
        raise Rejected(
            "530 5.7.0 "
            + gettext(
                "this intake address accepts only SMTP AUTH users, so it cannot be fed "
                "from a mailbox; give it allowed senders instead"
            )
        )
    raise Rejected(
        "530 5.7.0 "
        + gettext(
            "authentication required: log in with SMTP AUTH (after STARTTLS) to send "
            "SMS through this address"
        )
    )


def may_use(session: Session, login: MailLogin, intake: IntakeAddress) -> bool:
    """Whether LOGIN's account owns INTAKE or is a parent of its owner."""
    owner = session.get(Account, intake.account_id)
    return owner is not None and any(a.id == login.account_id for a in ancestors(session, owner))


def raise_unverified(verdict: Verdict | None, from_addr: str | None) -> None:
    """Rejected unless VERDICT says the From is genuine: 451 4.4.3 when DNS could not
    tell (a retry may), 550 naming the failed check otherwise."""
    if verdict is not None and verdict.ok:
        return
    if verdict is None:  # never checked: a door that skipped check_sender
        verdict = Verdict("temperror", "the sender was not checked yet")
    if verdict.status == "temperror":
        raise Rejected(
            "451 4.4.3 "
            + gettext(
                "could not verify that this mail is from %(sender)s now: %(why)s; try again later",
                sender=from_addr,
                why=one_line(verdict.why),
            )
        )
    raise Rejected(
        f"550 {verdict.code} "
        + gettext(
            "could not verify that this mail is from %(sender)s: %(why)s",
            sender=from_addr,
            why=one_line(verdict.why),
        )
    )
