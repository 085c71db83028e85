"""What happens when a phone answers: the conversation it belongs to, STOP/START, the
auto-responder, and the e-mail that brings it to the mailbox chosen for it.

Runs inside the transaction that stores the inbound SMS, so the opt-out, the confirmation
SMS and the forwarded mail exist exactly when the inbound SMS does.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlmodel import Session, col, select

from hub.core import i18n, phone
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.templating import render
from hub.core.timeutil import utcnow
from hub.inbound import texts as sms_texts
from hub.mail.outbox import build_message, queue_mail
from hub.mail.replytokens import reply_address
from hub.ports.sms import InboundSms
from hub.reminders.answers import handle_answer, open_question
from hub.sending import submit as sending
from hub.sending.optout import classify, is_blacklisted, opt_in, opt_out
from hub.store.models import (
    Account,
    Calendar,
    CalendarEventRow,
    InboundMail,
    InboundMessage,
    IntakeAddress,
    Message,
    Reminder,
)

log = logging.getLogger("smshub.inbound")


def _conversation(
    session: Session, sms: InboundSms, config: Config | None
) -> tuple[int | None, Message | None]:
    """(account id, our last message to that number) for an inbound SMS."""
    window = timedelta(days=config.inbound.conversation_window_days if config else 30)
    last = session.exec(
        select(Message)
        .where(Message.recipient == sms.sender, col(Message.created_at) >= utcnow() - window)
        .order_by(col(Message.created_at).desc())
        .limit(1)
    ).first()
    if last is not None:
        return last.account_id, last
    if config is not None:
        owner = config.inbound.number_accounts.get(sms.recipient)
        if owner:
            account = session.exec(select(Account).where(Account.name == owner)).first()
            if account is not None:
                return account.id, None
    return None, None


def receive_inbound(session: Session, sms: InboundSms, config: Config | None) -> None:
    """Store SMS once and act on it."""
    exists = session.exec(
        select(InboundMessage.id).where(
            InboundMessage.provider == sms.provider, InboundMessage.event_key == sms.event_key
        )
    ).first()
    if exists is not None:
        return
    account_id, last = _conversation(session, sms, config)
    # An open reminder question outranks every later SMS of ours to that number (an
    # auto-reply above all): "NON" after an auto-reply still cancels the appointment.
    question = open_question(session, sms.sender)
    if question is not None:
        account_id, last = question.account_id, question
    row = InboundMessage(
        provider=sms.provider,
        event_key=sms.event_key,
        sender=sms.sender,
        recipient=sms.recipient,
        text=sms.text,
        account_id=account_id,
        reply_to_message_id=last.id if last else None,
        received_at=sms.received_at or utcnow(),
    )
    session.add(row)
    session.flush()
    if account_id is None:
        log.warning(
            "inbound SMS from %s to %s matches no account; stored only", sms.sender, sms.recipient
        )
        return
    if config is None:
        return
    account = session.get(Account, account_id)
    assert account is not None and row.id is not None
    handling = _act(session, config, account, sms, row, last, question)
    # A reminder answer already told the receptionist in its own words.
    answered = any(h.startswith("reminder-") for h in handling)
    mailbox = "" if answered else forward_mailbox(session, account, last)
    if mailbox and config.mail_out.enabled:
        _forward(session, config, account, row, last, mailbox)
        row.forwarded_to = mailbox
        handling.append("forwarded")
    row.handling = ",".join(handling)
    session.add(row)


def _act(
    session: Session,
    config: Config,
    account: Account,
    sms: InboundSms,
    row: InboundMessage,
    last: Message | None,
    question: Message | None,
) -> list[str]:
    """What the SMS asks, first that applies: STOP, START, a reminder answer, else the
    auto-responder; returns what was done."""
    assert account.id is not None and row.id is not None
    keyword = classify(sms.text, config.inbound)
    numeric = phone.parse_number(sms.sender, config.hub.default_region).valid
    why = f"inbound SMS {row.id}: {sms.text!r}"
    if keyword == "stop" and numeric:
        # One confirmation per opt-out: a repeated STOP is recorded but not answered.
        if opt_out(session, account.id, sms.sender, "sms", why):
            text = sms_texts.stop_confirmation(config, account)
            _notice(session, config, account, sms.sender, text, f"stop:{row.id}")
        return ["stop"]
    if keyword == "start" and numeric:
        if opt_in(session, account.id, sms.sender, "sms", why):
            text = sms_texts.start_confirmation(config, account)
            _notice(session, config, account, sms.sender, text, f"start:{row.id}")
        return ["start"]
    answer = handle_answer(session, config, row, last)
    if answer is not None:
        return [answer]
    if question is None and numeric and _autoreply(session, config, account, sms, row.id):
        # Never to a number with an open reminder question: its next SMS must stay the
        # answer to the reminder, and the receptionist reads what it wrote meanwhile.
        return ["autoreply"]
    return []


def _notice(
    session: Session, config: Config, account: Account, number: str, text: str, key: str
) -> None:
    """The one SMS that confirms an opt-out or opt-in (charged like any SMS)."""
    try:
        _answer(session, config, account, number, text, "optout", key, opt_out_notice=True)
    except Exception as exc:  # no credits, disabled account: the opt-out itself still holds
        log.warning("could not send the opt-out notice to %s for %s: %s", number, account.name, exc)


def _answer(
    session: Session,
    config: Config,
    account: Account,
    number: str,
    text: str,
    source: str,
    key: str,
    *,
    opt_out_notice: bool = False,
) -> None:
    """Submit the hub's own SMS answer TEXT to NUMBER, in SESSION's transaction."""
    request = sending.SubmitRequest(
        account=account.name,
        recipients=[number],
        text=text,
        source=source,
        idempotency_key=key,
        opt_out_notice=opt_out_notice,
    )
    sending.submit_in(session, config, request)


def _autoreply(
    session: Session, config: Config, account: Account, sms: InboundSms, inbound_id: int
) -> bool:
    """At most one auto-reply per number per period; never to machines or blacklisted numbers."""
    if not account.autoreply_enabled or not account.autoreply_text.strip():
        return False
    info = phone.parse_number(sms.sender, config.hub.default_region)
    # Short codes and alphanumeric senders are machines: answering them risks a loop.
    if not info.valid or info.type not in {"mobile", "other"}:
        return False
    if is_blacklisted(session, account, sms.sender):
        return False
    since = utcnow() - timedelta(hours=account.autoreply_period_hours)
    recent = session.exec(
        select(Message.id).where(
            Message.account_id == account.id,
            Message.recipient == sms.sender,
            Message.source == "autoreply",
            col(Message.created_at) >= since,
        )
    ).first()
    if recent is not None:
        return False
    try:
        key = f"autoreply:{inbound_id}"
        _answer(session, config, account, sms.sender, account.autoreply_text, "autoreply", key)
    except Exception as exc:
        log.warning("auto-reply to %s not sent: %s", sms.sender, exc)
        return False
    return True


def forward_mailbox(session: Session, account: Account, last: Message | None) -> str:
    """Where an answer goes: the intake address's reply mailbox, else the person who sent the
    original mail-to-SMS, else the account's reply mailbox. After an answer (by mail or from
    the console) the conversation stays in the mailbox the answered SMS went to."""
    if last is not None and last.source == "reply":
        # Answer keys are "reply:<inbound id>:..." (hub.mail.intake.replies.answer_request).
        answered = last.idempotency_key.split(":")[1:2]
        if answered and answered[0].isdigit():
            previous = session.get(InboundMessage, int(answered[0]))
            if previous is not None and previous.forwarded_to:
                return previous.forwarded_to
    if last is not None and last.source == "mail":
        mail = session.exec(
            select(InboundMail).where(InboundMail.batch_id == last.batch_id)
        ).first()
        if mail is not None:
            if mail.intake_address_id is not None:
                intake = session.get(IntakeAddress, mail.intake_address_id)
                if intake is not None and intake.reply_mailbox:
                    return intake.reply_mailbox
            from hub.mail.parse import parse_mail

            parsed = parse_mail(mail.raw)
            return parsed.from_addr or mail.mail_from
    if last is not None and last.source == "calendar":
        calendar = session.exec(
            select(Calendar)
            .join(CalendarEventRow, col(CalendarEventRow.calendar_id) == col(Calendar.id))
            .join(Reminder, col(Reminder.event_id) == col(CalendarEventRow.id))
            .where(Reminder.message_id == last.id)
        ).first()
        if calendar is not None and calendar.notify_mailbox:
            return calendar.notify_mailbox
    return account.reply_mailbox


def _forward(
    session: Session,
    config: Config,
    account: Account,
    row: InboundMessage,
    last: Message | None,
    mailbox: str,
) -> None:
    assert row.id is not None
    shown = phone.format_international(row.sender) if row.sender.startswith("+") else row.sender
    language = i18n.account_language(account, config)
    about = ""
    if last is not None:
        words = " ".join(last.text.split()[:6]) + ("…" if len(last.text.split()) > 6 else "")
        with i18n.use(language):
            about = " " + _("(re: %(words)s)", words=words)
    headers = {"X-Smshub-From-Number": row.sender}
    # One thread per number (and under the original mail when there was one).
    thread = f"<sms-{account.id}-{row.sender.lstrip('+')}@smshub>"
    refs = [thread]
    if last is not None and last.source == "mail":
        mail = session.exec(
            select(InboundMail).where(InboundMail.batch_id == last.batch_id)
        ).first()
        if mail is not None and mail.message_id:
            refs.insert(0, f"<{mail.message_id}>")
    headers["In-Reply-To"] = refs[0]
    headers["References"] = " ".join(refs)
    if config.smtp.reply_domain:
        headers["Reply-To"] = reply_address(session, row.id, config.smtp.reply_domain)
    with i18n.use(language):
        body = render(
            "email/inbound_sms.txt.j2",
            sender=shown,
            text=row.text,
            received_at=row.received_at,
            # The reader's clock: the account's country's (UTC when it has none).
            tz=i18n.region_timezone(account.default_region or config.hub.default_region),
            original=last.text if last is not None else None,
            can_reply=bool(config.smtp.reply_domain),
            account=account.name,
        )
        subject = _("SMS from %(sender)s", sender=shown) + about
    message = build_message(config.mail_out.from_address, mailbox, subject, body, headers)
    queue_mail(
        session, message, kind="reply", dedupe_key=f"inbound:{row.id}", account_id=account.id
    )
