"""Balance alerts: tell an account's owner, once per crossing, that its credits run low.

An account (a main account or a limited sub-account: only they have a balance) with an
``alert_threshold`` is *armed* while its balance is at or above the threshold; the balance
change that takes it below is a crossing, and a later top-up, transfer or refund that brings it
back to the threshold or more re-arms it (``hub.sending.balance_alert`` keeps that state with
the balance, in the change's transaction).

A crossing is alerted after the change is committed, never inside it: ``alert_committed``
(handed to ``hub.sending.balance_alert.on_crossing`` by the composition roots, ``hub.app.Hub``
and the CLI's engine) runs ``check_balance``, which disarms the account and queues the alert in
one transaction of its own, by e-mail (sent by the mail outbox) and/or by SMS (an ``alert``-type
message submitted like any other and paid by the account). The alert SMS's own charge cannot
alert again: the account is disarmed before it is submitted. If the account cannot pay for the
alert SMS, only the e-mail goes, and the log says why. Both flips are single conditional
``UPDATE`` statements on the account row, so two concurrent sends that cross together alert
once.

Sending needs the configuration; a balance change made without it (``config=None``), or a
process that stops between the commit and the alert, leaves the crossing armed, and the next
change with it, or ``check_all`` (a periodic job), sends the alert.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from hub.core import i18n
from hub.core.i18n import ngettext
from hub.core.templating import render
from hub.errors import HubError, InsufficientCredits
from hub.mail.outbox import build_message, queue_mail
from hub.sending import balance_alert
from hub.sending.submit import SubmitRequest, submit_in
from hub.store.db import session_scope
from hub.store.models import Account, LedgerEntry

if TYPE_CHECKING:
    from hub.core.config import Config

log = logging.getLogger("smshub.alerts")

SOURCE = "alert"


@dataclass
class AlertSent:
    """What one crossing sent."""

    account: str
    balance: int
    threshold: int
    key: str
    mail_to: str | None = None
    sms_to: str | None = None
    sms_message_id: str | None = None
    # Why a channel that is set up did not go (no mail relay, not enough credits, ...).
    problems: list[str] = field(default_factory=list)


def sms_text(account: Account, balance: int, threshold: int) -> str:
    """The alert SMS: short, GSM-7, one part (in the language in effect)."""
    return ngettext(
        "smshub: account %(account)s has %(num)d credit left (alert below %(threshold)d). "
        "Top it up to keep sending.",
        "smshub: account %(account)s has %(num)d credits left (alert below %(threshold)d). "
        "Top it up to keep sending.",
        balance,
        account=account.name,
        threshold=threshold,
    )


def check_balance(
    session: Session, config: Config | None, account: Account, *, key: str | None = None
) -> AlertSent | None:
    """Re-arm ACCOUNT's alert, or fire it if its balance is below the threshold while armed.

    Runs in SESSION's transaction, which then holds the alert (mail and SMS) with the flip
    that disarms: after a committed crossing (``on_crossing``), from ``check_all``, or when an
    alert is set. KEY identifies the crossing (dedupe of the mail, idempotency of the SMS); by
    default the account's latest ledger row, i.e. the change that crossed.
    """
    if account.alert_threshold is None or account.id is None:
        return None
    if balance_alert.rearm(session, account) or config is None:
        return None  # without the configuration it cannot send: stays armed for check_all
    fired = balance_alert.fire(session, account)
    if fired is None:
        return None
    if key is None:
        last = session.execute(
            select(func.max(LedgerEntry.id)).where(LedgerEntry.account_id == account.id)
        ).scalar()
        key = f"alert:{account.id}:{last or 0}"
    sent = AlertSent(
        account=account.name, balance=fired.balance, threshold=fired.threshold, key=key
    )
    log.warning(
        "account %s is below its alert threshold (%d < %d)",
        account.name,
        fired.balance,
        fired.threshold,
    )
    # The account's people read the alert in the account's language.
    with i18n.use(i18n.account_language(account, config)):
        if fired.email:
            _mail(session, config, account, sent, fired.email)
        if fired.sms:
            _sms(session, config, account, sent, fired.sms)
    if not fired.email and not fired.sms:
        sent.problems.append("no alert e-mail or SMS number is set")
        log.warning("balance alert of %s has nobody to tell (set --email or --sms)", account.name)
    return sent


def alert_committed(engine: Engine, config: Config, account_id: int) -> AlertSent | None:
    """Alert a crossing that a committed balance change made, in a transaction of its own."""
    with session_scope(engine) as session:
        account = session.get(Account, account_id)
        return None if account is None else check_balance(session, config, account)


def _mail(session: Session, config: Config, account: Account, sent: AlertSent, to: str) -> None:
    if not config.mail_out.enabled:
        sent.problems.append(f"no e-mail to {to}: the hub sends no mail ([mail_out] host)")
        log.warning("balance alert of %s not mailed to %s: [mail_out] is not set", account.name, to)
        return
    parent = session.get(Account, account.parent_id) if account.parent_id else None
    body = render(
        "email/balance_alert.txt.j2",
        account=account.name,
        balance=sent.balance,
        threshold=sent.threshold,
        parent=parent.name if parent else None,
    )
    message = build_message(
        config.mail_out.from_address,
        to,
        ngettext(
            "Balance alert: %(account)s has %(num)d credit left",
            "Balance alert: %(account)s has %(num)d credits left",
            sent.balance,
            account=account.name,
        ),
        body,
    )
    queue_mail(session, message, kind="alert", dedupe_key=sent.key, account_id=account.id)
    sent.mail_to = to


def _sms(session: Session, config: Config, account: Account, sent: AlertSent, to: str) -> None:
    assert account.id is not None
    request = SubmitRequest(
        account=account.id,
        recipients=[to],
        text=sms_text(account, sent.balance, sent.threshold),
        type="alert",
        source=SOURCE,
        idempotency_key=sent.key,
    )
    try:
        # A savepoint: a refused alert SMS must not undo the change that triggered it.
        with session.begin_nested():
            result = submit_in(session, config, request)
    except InsufficientCredits:
        sent.problems.append(f"no SMS to {to}: not enough credits left to pay for it")
        log.warning(
            "balance alert SMS of %s to %s not sent: not enough credits for it%s",
            account.name,
            to,
            " (the e-mail was queued)" if sent.mail_to else "",
        )
        return
    except HubError as exc:
        sent.problems.append(f"no SMS to {to}: {exc}")
        log.warning("balance alert SMS of %s to %s not sent: %s", account.name, to, exc)
        return
    recipient = result.recipients[0] if result.recipients else None
    if recipient is not None and recipient.message_id:
        sent.sms_to = recipient.e164 or to
        sent.sms_message_id = recipient.message_id
    else:
        why = recipient.reason if recipient else "refused"
        sent.problems.append(f"no SMS to {to}: {why}")
        log.warning("balance alert SMS of %s to %s not sent: %s", account.name, to, why)


def check_all(engine: Engine, config: Config) -> list[AlertSent]:
    """Fire every armed alert whose balance is below its threshold (a periodic safety net
    for balance changes made without the configuration)."""
    with session_scope(engine) as session:
        due = session.exec(
            select(Account).where(
                col(Account.alert_threshold).is_not(None),
                col(Account.alert_armed).is_(True),
                col(Account.balance) < col(Account.alert_threshold),
            )
        ).all()
        sent = [check_balance(session, config, account) for account in due]
    return [s for s in sent if s is not None]
