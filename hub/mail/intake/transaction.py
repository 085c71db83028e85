"""One group of mails taken in, in one transaction: read, check, charge, write.

Every mail is read and authorized first (``read_mail``); then one query finds the group's
earlier copies, blacklists, invalid numbers and idempotency keys (``_LOOKUP``), the
per-sender limits are counted once per sender, each mail is submitted, the group's charges
settled (one UPDATE per paying account), and the stored mails written with one INSERT. A
group that cannot be paid as a whole raises ``GroupUnpaid`` (the caller takes its mails
again one at a time, so only the mail that cannot be paid is refused).
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import nullcontext
from typing import Any

from sqlalchemy import String, cast, insert, literal_column, select
from sqlmodel import Session

from hub.campaigns import links
from hub.core.config import Config
from hub.core.timeutil import utcnow
from hub.errors import AccountDisabled, HubError, InsufficientCredits, InvalidInput
from hub.mail.intake import refusals
from hub.mail.intake.confirm import confirmation_address, queue_confirmation
from hub.mail.intake.directory import IntakeDirectory
from hub.mail.intake.draft import Draft, read_mail
from hub.mail.intake.limits import HourlyCount
from hub.mail.intake.outcome import (
    IntakeOutcome,
    Rejected,
    already_received,
    failure_reply,
    one_line,
    refused,
)
from hub.mail.intake.quota import check_limits, sender_of, sender_quota
from hub.mail.intake.received import ReceivedMail
from hub.mail.intake.smtp_text import shown
from hub.sending import submit as sending
from hub.sending.lookups import RecipientLookups, lookup_statement
from hub.store.db import member, table
from hub.store.models import InboundMail

log = logging.getLogger("smshub.intake")

_INBOUND = table(InboundMail)
# The submissions' lookups and, in the same round trip, earlier copies of the group's mails
# (same account and Message-ID, or body hash).
_LOOKUP = lookup_statement(
    select(
        literal_column("'received'"),
        _INBOUND.c.account_id,
        _INBOUND.c.dedupe_key,
        cast(_INBOUND.c.id, String),
    ).where(
        member(_INBOUND.c.account_id, "received_accounts"),
        member(_INBOUND.c.dedupe_key, "received_keys"),
    )
)
_INSERT_INBOUND = insert(_INBOUND).returning(_INBOUND.c.id, sort_by_parameter_order=True)


class GroupUnpaid(Exception):
    """The credits of a group's mails could not all be charged."""


class IntakeTransaction:
    """The work of one group in SESSION's transaction: ``run`` fills in ``outcomes`` (None
    for a copy of an earlier mail of the group: take it again after the commit) and
    ``sent`` (SMS from mail queued per account)."""

    def __init__(
        self,
        session: Session,
        config: Config,
        hourly: HourlyCount,
        directory: IntakeDirectory,
        mails: list[ReceivedMail],
    ) -> None:
        self.session = session
        self.config = config
        self.hourly = hourly
        self.directory = directory
        self.mails = mails
        self.outcomes: list[IntakeOutcome | None] = [None] * len(mails)
        self.sent: Counter[int] = Counter()
        # Mails refused on an account's intake address: kept for its console, told to a
        # verified IMAP sender (hub.mail.intake.refusals).
        self.refused: list[tuple[ReceivedMail, str, int | None]] = []
        self.taken: list[tuple[int, Draft, sending.SubmitResult]] = []
        self.submits = sending.SubmitBatch(session, config, RecipientLookups(_LOOKUP))

    def run(self) -> None:
        drafts = self._read_all()
        earlier = self._prepare(drafts) if drafts else {}
        quota = sender_quota(self.session, self.config, self._wanted(drafts, earlier))
        self._submit_all(drafts, earlier, quota)
        settle_group(self.submits)
        self.submits.write()
        for mail, reply, account_id in self.refused:
            if account_id is not None and reply.startswith("5"):
                refusals.record(self.session, self.config, mail, account_id, reply)
        self._store()

    def _read_all(self) -> dict[int, Draft]:
        """The drafts of the mails that can be read and are authorized, by index."""
        drafts: dict[int, Draft] = {}
        for index, mail in enumerate(self.mails):
            if mail.parsed is None:
                log.warning(
                    "mail from %s could not be read",
                    shown(mail.env.mail_from),
                    exc_info=mail.unreadable,
                )
                unreadable = mail.unreadable or InvalidInput("the mail cannot be read")
                self.outcomes[index] = IntakeOutcome(
                    accepted=False, reply=failure_reply(unreadable)
                )
                continue
            try:
                drafts[index] = read_mail(self.session, self.config, mail, self.directory)
            except Rejected as exc:
                self.outcomes[index] = refused(mail, exc)
                self.refused.append((mail, exc.reply, self._intake_account(mail)))
        return drafts

    def _intake_account(self, mail: ReceivedMail) -> int | None:
        """The account whose intake address MAIL was sent to (one only), else None."""
        found = (self.directory.find(r) for r in mail.env.rcpt_to)
        accounts = {i.account_id for i in found if i}
        return accounts.pop() if len(accounts) == 1 else None

    def _prepare(self, drafts: dict[int, Draft]) -> dict[tuple[int, str], int]:
        """Read what the DRAFTS' submissions need in one query, with the mails already taken
        in: (account, dedupe key) -> id of the stored mail."""
        keys = [_key(self.mails[i], d) for i, d in drafts.items()]
        found = self.submits.prepare(
            [d.request for d in drafts.values()],
            received_accounts=sorted({a for a, _ in keys}),
            received_keys=sorted({k for _, k in keys}),
        )
        return {(account, key): int(mail_id) for _, account, key, mail_id in found}

    def _wanted(
        self, drafts: dict[int, Draft], earlier: dict[tuple[int, str], int]
    ) -> Counter[str]:
        """The mails that will be submitted (not earlier copies), counted per sender."""
        wanted: Counter[str] = Counter()
        seen: set[tuple[int, str]] = set()
        for index, draft in drafts.items():
            key = _key(self.mails[index], draft)
            if key not in earlier and key not in seen:
                seen.add(key)
                wanted[sender_of(self.mails[index], draft)] += 1
        return wanted

    def _submit_all(
        self,
        drafts: dict[int, Draft],
        earlier: dict[tuple[int, str], int],
        quota: Counter[str],
    ) -> None:
        seen: set[tuple[int, str]] = set()
        for index, draft in drafts.items():
            mail = self.mails[index]
            key = _key(mail, draft)
            if key in earlier:
                self.outcomes[index] = already_received(earlier[key])
                continue
            if key in seen:  # a copy of a mail of this group: after the commit
                continue
            seen.add(key)
            try:
                result = self._submit(mail, draft, quota)
            except Rejected as exc:
                self.outcomes[index] = refused(mail, exc)
                account = draft.request.account
                self.refused.append(
                    (mail, exc.reply, account if isinstance(account, int) else None)
                )
                continue
            self.taken.append((index, draft, result))

    def _submit(
        self, mail: ReceivedMail, draft: Draft, quota: Counter[str]
    ) -> sending.SubmitResult:
        """Check the limits and queue DRAFT's SMS, and charge them when the mail is alone in
        its transaction or has files (a group's charges are settled together); raises
        Rejected."""
        check_limits(self.session, self.config, self.hourly, mail, draft, self.sent, quota)
        account = draft.request.account
        assert isinstance(account, int)
        if draft.files:
            # Hosted files are written before the charge that may refuse the mail: the mail
            # gets a savepoint of its own, and the group's charges are settled before it.
            settle_group(self.submits)
        with self.session.begin_nested() if draft.files else nullcontext():
            if draft.files:
                # Hosted only now, after the duplicate check: a mail sent twice hosts nothing
                # twice. The links are in the text submit counts, so they are charged.
                draft.request.text = links.attach_files(
                    self.session, self.config, account, draft.request.text, draft.files
                )
            result = self._queue(draft, settle=len(self.mails) == 1 or bool(draft.files))
        if draft.request.source == "mail":
            queued = sum(r.status in {"queued", "scheduled"} for r in result.recipients)
            self.sent[account] += queued
        return result

    def _queue(self, draft: Draft, settle: bool) -> sending.SubmitResult:
        """Submit DRAFT (and charge it when SETTLE); what the hub refuses becomes Rejected."""
        try:
            result = self.submits.submit(draft.request)
            if not result.accepted:
                reasons = "; ".join(f"{r.input}: {r.reason}" for r in result.recipients)
                raise Rejected(f"550 5.1.3 no SMS sent: {one_line(reasons)}")
            if settle:
                self.submits.settle()
        except InsufficientCredits as exc:
            raise Rejected(f"550 5.7.1 {exc}") from None
        except AccountDisabled as exc:
            raise Rejected(f"550 5.7.1 {exc}") from None
        except (InvalidInput, HubError) as exc:
            raise Rejected(f"550 5.6.0 {one_line(str(exc))}") from None
        return result

    def _store(self) -> None:
        """Write the mails taken in, confirm them, and answer them 250."""
        rows = [_inbound_row(self.mails[i], draft, result) for i, draft, result in self.taken]
        connection = self.session.connection()
        ids = connection.execute(_INSERT_INBOUND, rows).scalars().all() if rows else []
        for (index, draft, result), row, mail_id in zip(self.taken, rows, ids, strict=True):
            _confirm(self.session, self.config, self.mails[index], draft, result, mail_id)
            self.outcomes[index] = IntakeOutcome(
                accepted=True,
                result=result,
                mail_id=mail_id,
                intake=draft.intake,
                parsed=draft.parsed,
                warnings=draft.warnings,
                reply=f"250 2.0.0 {one_line(row['summary'])}",
            )


def settle_group(submits: sending.SubmitBatch) -> None:
    """Charge the group's mails so far, or raise GroupUnpaid (the group is rolled back)."""
    try:
        submits.settle()
    except InsufficientCredits:
        raise GroupUnpaid from None


def _key(mail: ReceivedMail, draft: Draft) -> tuple[int, str]:
    assert isinstance(draft.request.account, int)
    return draft.request.account, mail.dedupe_key


def _confirm(
    session: Session,
    config: Config,
    mail: ReceivedMail,
    draft: Draft,
    result: sending.SubmitResult,
    mail_id: int,
) -> None:
    """Queue the confirmation mail of a mail taken in, when its address and the hub ask."""
    if not (
        draft.intake is not None
        and draft.intake.confirm
        and config.smtp.confirmations
        and config.mail_out.enabled
    ):
        return
    assert isinstance(draft.request.account, int)
    to = confirmation_address(mail.env.login, draft.parsed.from_addr, mail.vouched)
    if to is None:
        log.info(
            "no confirmation for mail %d: the login %s is not an e-mail address",
            mail_id,
            mail.env.login.username if mail.env.login else "?",
        )
        return
    queue_confirmation(
        session,
        config,
        draft.parsed,
        result,
        draft.rejected,
        draft.request.account,
        mail_id,
        to,
    )


def _inbound_row(mail: ReceivedMail, draft: Draft, result: sending.SubmitResult) -> dict[str, Any]:
    """The stored copy of a mail taken in, with the batch of its SMS and what its sender
    was told."""
    env = mail.env
    return {
        "account_id": draft.request.account,
        "intake_address_id": draft.intake.id if draft.intake else None,
        "dedupe_key": mail.dedupe_key,
        "message_id": draft.parsed.message_id,
        "sha256": mail.sha256,
        "raw": env.raw,
        "source": env.source,
        "mail_from": env.mail_from[:255],
        "rcpt_to": "\n".join(env.rcpt_to),
        "subject": draft.parsed.subject[:500],
        "batch_id": result.batch_id,
        "status": "accepted",
        "summary": summarize(result, draft.rejected),
        "received_at": utcnow(),
    }


def summarize(result: sending.SubmitResult, rejected: list[dict[str, str]]) -> str:
    """One line for the SMTP reply and the history: what was queued, what was left out."""
    queued = [r for r in result.recipients if r.status in {"queued", "scheduled"}]
    left = [f"{r.input} ({r.reason})" for r in result.recipients if r.status == "rejected"] + [
        f"{r['input']} ({r['reason']})" for r in rejected
    ]
    text = (
        f"queued {len(queued)} SMS ({result.segments} part(s) each, "
        f"{result.credits_charged} credits)"
    )
    if left:
        text += "; left out: " + ", ".join(left)
    return text
