"""E-mail answers to forwarded SMS: the new text goes back to the phone as an SMS."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from hub.core.config import Config
from hub.errors import ReplyDeferred, ReplyRefused
from hub.mail import parse as mailparse
from hub.mail.intake.sender_auth import Verdict
from hub.mail.replytokens import inbound_id_from, is_reply_address
from hub.ports.mail import MailLogin
from hub.sending import submit as sending
from hub.store.models import Account, InboundMessage


@dataclass
class ReplyDraft:
    inbound: InboundMessage
    request: sending.SubmitRequest


def reply_addresses(rcpt_to: list[str], config: Config) -> list[str]:
    """The recipients that are reply addresses of this hub."""
    return [r for r in rcpt_to if is_reply_address(r, config.smtp.reply_domain)]


def check_reply_rcpt(session: Session, address: str) -> str | None:
    """None if ADDRESS is a genuine reply address, else the SMTP refusal."""
    ident = inbound_id_from(session, address)
    if ident is None or session.get(InboundMessage, ident) is None:
        return f"550 5.1.1 <{address}> is not a reply address of this hub"
    return None


def read_reply(
    session: Session,
    config: Config,
    address: str,
    parsed: mailparse.ParsedMail,
    login: MailLogin | None,
    vouched: Verdict | None,
) -> ReplyDraft:
    """The SMS an answer becomes; raises ReplyRefused with a reason the sender will read.

    Without a login the answer must come from the mailbox the SMS was forwarded to, and
    that From must be verified (VOUCHED: a trusted relay's verdict or the hub's own
    DKIM/SPF/DMARC check): a From alone is only what the sender wrote."""
    ident = inbound_id_from(session, address)
    inbound = session.get(InboundMessage, ident) if ident is not None else None
    if inbound is None or inbound.account_id is None:
        raise ReplyRefused(f"<{address}> does not belong to an SMS conversation of this hub")
    account = session.get(Account, inbound.account_id)
    assert account is not None and account.id is not None
    if login is not None:
        if login.account_id != account.id:
            raise ReplyRefused(f"{login.username} may not answer SMS of account {account.name}")
    else:
        sender = (parsed.from_addr or "").lower()
        if not inbound.forwarded_to or sender != inbound.forwarded_to.lower():
            raise ReplyRefused(
                f"only {inbound.forwarded_to or 'the mailbox the SMS was forwarded to'} can "
                f"answer this SMS; this answer came from {sender or 'an unknown sender'}"
            )
        if vouched is None or vouched.status == "temperror":
            why = vouched.why if vouched else "the sender was not checked yet"
            raise ReplyDeferred(f"could not verify that this answer is from {sender} now: {why}")
        if not vouched.ok:
            raise ReplyRefused(f"could not verify that this answer is from {sender}: {vouched.why}")
    text = mailparse.extract_reply_text(parsed)
    key = parsed.message_id or mailparse.normalize_whitespace(text)[:100]
    request = answer_request(
        inbound,
        text,
        key,
        empty="the answer has no new text above the quoted message; write your answer at the top",
    )
    return ReplyDraft(inbound, request)


def answer_request(
    inbound: InboundMessage,
    text: str,
    key: str,
    empty: str = "the answer is empty; write the text to send",
) -> sending.SubmitRequest:
    """The SMS that answers INBOUND, whether the answer came by mail or from the console:
    same account, to the number the SMS came from, source "reply"; KEY makes a repeated
    answer send once. ReplyRefused (EMPTY for a blank text) says why it cannot go out."""
    if inbound.account_id is None:
        raise ReplyRefused("this SMS matched no account, so nobody can answer it")
    if not inbound.sender.startswith("+"):
        raise ReplyRefused(
            f"no phone number found in this conversation: the SMS came from "
            f"{inbound.sender!r}, which cannot receive answers"
        )
    if not text.strip():
        raise ReplyRefused(empty)
    return sending.SubmitRequest(
        account=inbound.account_id,
        recipients=[inbound.sender],
        text=text,
        source="reply",
        idempotency_key=f"reply:{inbound.id}:{key}",
    )
