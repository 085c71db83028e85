"""Reading one mail into the SMS it asks for (a ``Draft``), or the reply that refuses it.

An answer to a forwarded SMS goes back to that phone; any other mail must reach one
account's intake address, be authorized (``authorize``), carry the PIN the address asks
for, name at least one number (subject, address or ``list:``), have a text or a file to
send, and attach only files the hub can link.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlmodel import Session

from hub.campaigns import contacts, links
from hub.core.config import Config
from hub.core.i18n import gettext
from hub.errors import NotFound
from hub.mail import parse as mailparse
from hub.mail.intake.addresses import pin_hash
from hub.mail.intake.authorize import authorize
from hub.mail.intake.directory import IntakeDirectory
from hub.mail.intake.outcome import Rejected, failure_reply, one_line
from hub.mail.intake.received import ReceivedMail
from hub.mail.intake.replies import ReplyDeferred, ReplyRefused, read_reply, reply_addresses
from hub.sending import submit as sending
from hub.store.models import Account, IntakeAddress, IntakeKind

log = logging.getLogger("smshub.intake")


@dataclass
class Draft:
    """A mail read and authorized, ready to submit (also the dry run's answer)."""

    intake: IntakeAddress | None  # None for an answer to a forwarded SMS
    parsed: mailparse.ParsedMail
    request: sending.SubmitRequest
    rejected: list[dict[str, str]]
    warnings: list[str]
    # Attachments to host and link in the SMS, once the mail is known not to be a duplicate.
    files: list[links.MailAttachment] = field(default_factory=list)


def read_mail(
    session: Session, config: Config, mail: ReceivedMail, directory: IntakeDirectory
) -> Draft:
    """Authorize a parsed mail and build its submit request; raises Rejected.

    DIRECTORY holds the intake addresses of the mail's recipients."""
    parsed = mail.parsed
    assert parsed is not None
    if parsed.broken is not None:
        raise Rejected(f"554 5.6.0 {parsed.broken}")
    replies = reply_addresses(mail.env.rcpt_to, config)
    if replies:
        return _answer(session, config, mail, replies[0])
    intake = _intake_of(mail, directory)
    authorize(session, mail, intake)
    parts = mail.subject
    assert parts is not None
    if intake.pin_hash and pin_hash(parts.tokens.get("pin", "")) != intake.pin_hash:
        raise Rejected("550 5.7.1 " + gettext("wrong or missing PIN: put pin:NNNN in the subject"))
    rejected: list[dict[str, str]] = []
    numbers = _numbers(session, mail, directory, intake, rejected)
    files, warnings = _attachments(mail)
    if not parsed.text.strip() and not files:
        raise Rejected("550 5.6.0 " + gettext("the mail has no text: write the SMS in the body"))
    request = _request(session, mail, intake, numbers)
    return Draft(intake, parsed, request, rejected, warnings, files)


def _answer(session: Session, config: Config, mail: ReceivedMail, address: str) -> Draft:
    """The draft of an answer (to ADDRESS) to a forwarded SMS."""
    parsed = mail.parsed
    assert parsed is not None
    try:
        reply = read_reply(session, config, address, parsed, mail.env.login, mail.vouched)
    except ReplyDeferred as exc:
        raise Rejected(f"451 4.4.3 {one_line(str(exc))}; try again later") from None
    except ReplyRefused as exc:
        raise Rejected(
            "550 5.7.1 " + gettext("your answer was not sent by SMS: %(why)s", why=exc)
        ) from None
    return Draft(None, parsed, reply.request, [], list(parsed.warnings))


def _intake_of(mail: ReceivedMail, directory: IntakeDirectory) -> IntakeAddress:
    """The intake address MAIL sends through (a subject one first); one account only."""
    intakes = [i for i in (directory.find(r) for r in mail.env.rcpt_to) if i is not None]
    if not intakes:
        raise Rejected("550 5.1.1 " + gettext("no SMS intake address among the recipients"))
    if len({i.account_id for i in intakes}) > 1:
        raise Rejected(
            "550 5.7.1 "
            + gettext(
                "one mail can send on one account only; write to each account's address separately"
            )
        )
    return next((i for i in intakes if i.kind == IntakeKind.SUBJECT), intakes[0])


def _numbers(
    session: Session,
    mail: ReceivedMail,
    directory: IntakeDirectory,
    intake: IntakeAddress,
    rejected: list[dict[str, str]],
) -> list[str]:
    """The numbers MAIL sends to (subject, addresses, lists); what is not one goes to
    REJECTED; Rejected when none is left."""
    parts, parsed = mail.subject, mail.parsed
    assert parts is not None and parsed is not None
    numbers = list(parts.numbers)
    from_address, _ = mailparse.numbers_from_addresses(mail.env.rcpt_to, directory.number_domains)
    numbers += from_address
    # list:NAME sends to the members of the account's list (numbers only: a mail body
    # is not a template, so merge fields are for campaigns).
    numbers += expand_lists(session, intake.account_id, parts.lists, rejected)
    if intake.kind == IntakeKind.SUBJECT:
        # With numbers in the address the subject is free text; here it is the list.
        rejected += [
            {
                "input": piece,
                "reason": "neither a phone number nor a known subject token "
                "(pin:, sender:, type:, list:)",
            }
            for piece in parts.unknown
        ]
    if not numbers and parts.lists:
        reasons = "; ".join(f"{r['input']}: {r['reason']}" for r in rejected)
        raise Rejected(
            "550 5.1.3 " + gettext("no phone number to send to: %(why)s", why=one_line(reasons))
        )
    if not numbers:
        raise Rejected(
            "550 5.1.3 "
            + gettext(
                "no phone number found in the subject '%(subject)s': write the numbers "
                "in the subject, separated by commas",
                subject=one_line(parsed.subject, 80),
            )
        )
    return numbers


def _attachments(mail: ReceivedMail) -> tuple[list[links.MailAttachment], list[str]]:
    """The files MAIL sends as links, and its warnings; Rejected for a file it cannot."""
    parsed = mail.parsed
    assert parsed is not None
    # PNG/GIF/JPEG/PDF attachments go as short links appended to the text; images the
    # body shows inline are signature logos and are left out.
    if isinstance(mail.attachments, Exception):
        # Reading the attachments failed: the mail's content, or (rarely) the hub.
        log.warning("attachments of a mail could not be read", exc_info=mail.attachments)
        raise Rejected(failure_reply(mail.attachments))
    files, problems, logos = mail.attachments
    if problems:
        raise Rejected(
            "550 5.6.0 "
            + gettext(
                "only PNG, GIF, JPEG and PDF attachments can be sent by SMS (as links): "
                "%(problems)s; remove it or send it another way",
                problems="; ".join(problems),
            )
        )
    return files, attachment_warnings(list(parsed.warnings), files, logos)


def _request(
    session: Session, mail: ReceivedMail, intake: IntakeAddress, numbers: list[str]
) -> sending.SubmitRequest:
    parts, parsed = mail.subject, mail.parsed
    assert parts is not None and parsed is not None
    account = session.get(Account, intake.account_id)
    assert account is not None and account.id is not None
    return sending.SubmitRequest(
        account=account.id,
        recipients=numbers,
        text=parsed.text,
        sender=parts.tokens.get("sender") or intake.sender,
        type=parts.tokens.get("type", "alert"),
        source="mail",
        door=mail.env.source,
        idempotency_key=f"mail:{account.id}:{mail.dedupe_key}",
        # The account's click-tracking default (attached files' links included).
        shorten_links=None,
    )


def attachment_warnings(
    warnings: list[str], files: list[links.MailAttachment], logos: list[str]
) -> list[str]:
    """WARNINGS with each file the hub sends as a link said so, not "ignored"."""
    linked = {f"attachment {f.label} ignored" for f in files}
    kept = [w for w in warnings if w not in linked]
    kept += [f"{f.label} sent as a link" for f in files]
    kept += [f"image {name} left out" for name in logos]
    return kept


def expand_lists(
    session: Session, account_id: int, names: list[str], rejected: list[dict[str, str]]
) -> list[str]:
    """The numbers of the account's lists NAMES; unknown or empty lists go to REJECTED."""
    numbers: list[str] = []
    for name in names:
        try:
            members = contacts.list_members(session, account_id, name)
        except NotFound:
            rejected.append(
                {"input": f"list:{name}", "reason": "no contact list of that name on this account"}
            )
            continue
        if not members:
            rejected.append({"input": f"list:{name}", "reason": "the list is empty"})
        numbers += [number for number, _ in members]
    return numbers
