"""RCPT TO: whether an address is one of the hub's intake (or answer) addresses, and whether
the SMTP login may send through it. Intake addresses found lately are answered from a cache
(``RcptCache``) without a query."""

from __future__ import annotations

from sqlalchemy import Engine

from hub.core.config import Config
from hub.core.i18n import gettext
from hub.mail.intake.addresses import find_intake
from hub.mail.intake.rcpt_cache import KnownIntake, RcptCache
from hub.mail.intake.replies import check_reply_rcpt
from hub.mail.replytokens import is_reply_address
from hub.ports.mail import MailLogin
from hub.sending.accounts import ancestors
from hub.store.db import read_scope
from hub.store.models import Account


def check_rcpt(
    engine: Engine, config: Config, cache: RcptCache, address: str, login: MailLogin | None
) -> str | None:
    """None if ADDRESS is one of our intake addresses (and LOGIN may use it), else a reply."""
    with read_scope(engine) as session:
        if is_reply_address(address, config.smtp.reply_domain):
            return check_reply_rcpt(session, address)
        intake = find_intake(session, address)
        if intake is None:
            return "550 5.7.1 " + gettext(
                "<%(address)s> is not an SMS intake address of this hub (relaying denied)",
                address=address,
            )
        owner = session.get(Account, intake.account_id)
        chain = ancestors(session, owner) if owner is not None else []
        known = KnownIntake(owners=tuple(a.id for a in chain if a.id is not None))
    cache.put(address, known)
    return rcpt_reply(address, login, known)


def cached_rcpt_reply(
    config: Config, cache: RcptCache, address: str, login: MailLogin | None
) -> tuple[bool, str | None]:
    """(True, what ``check_rcpt`` answers) for an intake address found lately, without a
    query; (False, None) when only ``check_rcpt`` can tell."""
    if is_reply_address(address, config.smtp.reply_domain):
        return False, None
    known = cache.get(address)
    if known is None:
        return False, None
    return True, rcpt_reply(address, login, known)


def rcpt_reply(address: str, login: MailLogin | None, known: KnownIntake) -> str | None:
    """None if LOGIN (or no login) may send through the intake address KNOWN, else a 550."""
    if login is not None and login.account_id not in known.owners:
        return "550 5.7.1 " + gettext(
            "%(user)s may not send through <%(address)s>", user=login.username, address=address
        )
    return None
