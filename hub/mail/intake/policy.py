"""The intake policy: one mail in, SMS queued (or a reason why not) out.

The SMTP listener and the IMAP poller both hand raw mail here. A mail is accepted only
after its raw bytes (with their hash) and the SMS it produced are committed in one
transaction; the same Message-ID on the same account is sent once.

Mails that arrive together are taken in together (group commit, on a thread and a
connection of its own): read without the database first (``receive``: parse, subject,
attachments, sender verdict), then checked, charged and written in one transaction with one
query for their earlier copies, blacklists, invalid numbers and idempotency keys, one UPDATE
per paying account and one INSERT per table. Each mail still gets the answer it would get
alone: a group that cannot be paid as a whole, or that one mail breaks, is taken again one
mail at a time, so only that mail is refused.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, String, bindparam, cast, insert, literal_column, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session

from hub.campaigns import contacts, links
from hub.core.config import Config
from hub.core.i18n import gettext
from hub.core.timeutil import utcnow
from hub.errors import (
    AccountDisabled,
    HubError,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    ReplyDeferred,
    ReplyRefused,
    TemporaryFailure,
)
from hub.mail import parse as mailparse
from hub.mail.intake import refusals
from hub.mail.intake.addresses import (
    MailLogin,
    find_intake,
    number_domains,
    pin_hash,
    sender_allowed,
)
from hub.mail.intake.confirm import confirmation_address, queue_confirmation
from hub.mail.intake.directory import DirectoryCache, IntakeDirectory
from hub.mail.intake.group_commit import GroupCommit
from hub.mail.intake.limits import HourlyCount, sender_limit_key
from hub.mail.intake.rcpt_cache import KnownIntake, RcptCache
from hub.mail.intake.received import MailEnvelope, ReceivedMail, check_sender, receive
from hub.mail.intake.replies import check_reply_rcpt, read_reply, reply_addresses
from hub.mail.intake.resolver import make_resolver
from hub.mail.intake.sender_auth import Verdict
from hub.mail.intake.smtp_text import shown, smtp_line
from hub.mail.parse.structure import mime_depth
from hub.mail.replytokens import is_reply_address
from hub.sending import submit as sending
from hub.sending.accounts import ancestors
from hub.sending.lookups import RecipientLookups, lookup_statement
from hub.store import limits as limits_sql
from hub.store.db import WorkerConnection, read_scope, session_scope, table
from hub.store.models import Account, InboundMail, IntakeAddress, IntakeKind

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
        _INBOUND.c.account_id.in_(bindparam("received_accounts", expanding=True)),
        _INBOUND.c.dedupe_key.in_(bindparam("received_keys", expanding=True)),
    )
)
_INSERT_INBOUND = insert(_INBOUND).returning(_INBOUND.c.id, sort_by_parameter_order=True)


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
                why=_one_line(verdict.why),
            )
        )
    raise Rejected(
        f"550 {verdict.code} "
        + gettext(
            "could not verify that this mail is from %(sender)s: %(why)s",
            sender=from_addr,
            why=_one_line(verdict.why),
        )
    )


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TEMPORARY = "451 4.3.0 temporary failure; please try again later"
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
        return _TEMPORARY
    if isinstance(exc, HubError):
        return smtp_line(f"554 5.6.0 {_one_line(str(exc))}")
    if isinstance(exc, _CONTENT):
        return (
            f"554 5.6.0 the mail cannot be read ({type(exc).__name__}); "
            "check its headers and MIME structure"
        )
    return _TEMPORARY


# Longest wait for the other connections' next mails before a group is taken in: about what
# answering a mail and reading the next one takes (see GroupCommit).
_LINGER = 0.002


class IntakePolicy:
    """Decides about each mail; blocking (database), so doors call it from a worker thread
    (or ``take_async`` from the event loop)."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config
        self.hourly = HourlyCount()
        self.rcpts = RcptCache()
        self.directories = DirectoryCache()
        # DNS for the hub's own sender checks ([dns]).
        self.resolver = make_resolver(config.dns)
        # The group commit's transactions, one after the other, on a connection of their own.
        self.connection = WorkerConnection(engine)
        self._group: GroupCommit[ReceivedMail, IntakeOutcome] = GroupCommit(
            self._take_batch, linger=_LINGER, name="mail-intake", on_idle=self.connection.close
        )

    # -- RCPT TO ----------------------------------------------------------------------------
    def check_rcpt(self, address: str, login: MailLogin | None) -> str | None:
        """None if ADDRESS is one of our intake addresses (and LOGIN may use it), else a reply."""
        with read_scope(self.engine) as session:
            if is_reply_address(address, self.config.smtp.reply_domain):
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
        self.rcpts.put(address, known)
        return self._rcpt_reply(address, login, known)

    def cached_rcpt_reply(self, address: str, login: MailLogin | None) -> tuple[bool, str | None]:
        """(True, what ``check_rcpt`` answers) for an intake address found lately, without a
        query; (False, None) when only ``check_rcpt`` can tell."""
        if is_reply_address(address, self.config.smtp.reply_domain):
            return False, None
        known = self.rcpts.get(address)
        if known is None:
            return False, None
        return True, self._rcpt_reply(address, login, known)

    @staticmethod
    def _rcpt_reply(address: str, login: MailLogin | None, known: KnownIntake) -> str | None:
        if login is not None and login.account_id not in known.owners:
            return "550 5.7.1 " + gettext(
                "%(user)s may not send through <%(address)s>", user=login.username, address=address
            )
        return None

    def _may_use(self, session: Session, login: MailLogin, intake: IntakeAddress) -> bool:
        owner = session.get(Account, intake.account_id)
        return owner is not None and any(
            a.id == login.account_id for a in ancestors(session, owner)
        )

    # -- the mail ---------------------------------------------------------------------------
    def read(self, session: Session, mail: ReceivedMail, directory: IntakeDirectory) -> Draft:
        """Authorize a parsed mail and build its submit request; raises Rejected.

        DIRECTORY holds the intake addresses of the mail's recipients."""
        env, parsed = mail.env, mail.parsed
        assert parsed is not None
        if parsed.broken is not None:
            raise Rejected(f"554 5.6.0 {parsed.broken}")
        replies = reply_addresses(env.rcpt_to, self.config)
        if replies:
            try:
                reply = read_reply(
                    session, self.config, replies[0], parsed, env.login, mail.vouched
                )
            except ReplyDeferred as exc:
                raise Rejected(f"451 4.4.3 {_one_line(str(exc))}; try again later") from None
            except ReplyRefused as exc:
                raise Rejected(
                    "550 5.7.1 " + gettext("your answer was not sent by SMS: %(why)s", why=exc)
                ) from None
            return Draft(None, parsed, reply.request, [], list(parsed.warnings))
        intakes = [i for i in (directory.find(r) for r in env.rcpt_to) if i is not None]
        if not intakes:
            raise Rejected("550 5.1.1 " + gettext("no SMS intake address among the recipients"))
        if len({i.account_id for i in intakes}) > 1:
            raise Rejected(
                "550 5.7.1 "
                + gettext(
                    "one mail can send on one account only; "
                    "write to each account's address separately"
                )
            )
        intake = next((i for i in intakes if i.kind == IntakeKind.SUBJECT), intakes[0])
        self._authorize(session, mail, intake)

        parts = mail.subject
        assert parts is not None
        if intake.pin_hash and pin_hash(parts.tokens.get("pin", "")) != intake.pin_hash:
            raise Rejected(
                "550 5.7.1 " + gettext("wrong or missing PIN: put pin:NNNN in the subject")
            )
        warnings = list(parsed.warnings)
        rejected: list[dict[str, str]] = []
        numbers = list(parts.numbers)
        from_address, _ = mailparse.numbers_from_addresses(env.rcpt_to, directory.number_domains)
        numbers += from_address
        # list:NAME sends to the members of the account's list (numbers only: a mail body
        # is not a template, so merge fields are for campaigns).
        numbers += _expand_lists(session, intake.account_id, parts.lists, rejected)
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
                "550 5.1.3 "
                + gettext("no phone number to send to: %(why)s", why=_one_line(reasons))
            )
        if not numbers:
            raise Rejected(
                "550 5.1.3 "
                + gettext(
                    "no phone number found in the subject '%(subject)s': write the numbers "
                    "in the subject, separated by commas",
                    subject=_one_line(parsed.subject, 80),
                )
            )
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
        warnings = attachment_warnings(warnings, files, logos)
        if not parsed.text.strip() and not files:
            raise Rejected(
                "550 5.6.0 " + gettext("the mail has no text: write the SMS in the body")
            )
        account = session.get(Account, intake.account_id)
        assert account is not None and account.id is not None
        request = sending.SubmitRequest(
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
        return Draft(intake, parsed, request, rejected, warnings, files)

    def _authorize(self, session: Session, mail: ReceivedMail, intake: IntakeAddress) -> None:
        env, parsed = mail.env, mail.parsed
        assert parsed is not None
        if env.login is not None:
            if not self._may_use(session, env.login, intake):
                raise Rejected(
                    "550 5.7.1 "
                    + gettext("%(user)s may not send through this address", user=env.login.username)
                )
            return
        if env.source == "imap" and (intake.require_auth or not intake.allowed_senders.strip()):
            # Anyone can write to a mailbox: only allowed senders vouched for by a trusted
            # relay can use it.
            raise Rejected(
                "530 5.7.0 "
                + gettext(
                    "this intake address accepts only SMTP AUTH users, so it cannot be fed "
                    "from a mailbox; give it allowed senders instead"
                )
            )
        if intake.require_auth or not intake.allowed_senders.strip():
            raise Rejected(
                "530 5.7.0 "
                + gettext(
                    "authentication required: log in with SMTP AUTH (after STARTTLS) to send "
                    "SMS through this address"
                )
            )
        if not sender_allowed(intake, parsed.from_addr):
            raise Rejected(
                "550 5.7.1 "
                + gettext(
                    "%(sender)s is not allowed to send SMS through this address",
                    sender=parsed.from_addr or gettext("this sender"),
                )
            )
        raise_unverified(mail.vouched, parsed.from_addr)

    def _sender_quota(self, session: Session, wanted: Counter[str]) -> Counter[str]:
        """Of WANTED (sender -> mails of this group), how many each sender may still send
        this minute, counted in SQL in the group's own transaction: the limit holds across
        every intake instance, and a group rolled back (then taken again) counted nothing.
        One UPSERT per sender of the group; one per mail only for a sender at its limit."""
        per_minute = self.config.smtp.mails_per_sender_per_minute
        quota: Counter[str] = Counter()
        # In one order on every instance: two groups never wait for each other's rows.
        for sender, n in sorted(wanted.items()):
            key = sender_limit_key(sender)
            if limits_sql.take(session, key, per_minute, 60.0, n=n).allowed:
                quota[sender] = n
                continue
            while quota[sender] < n and limits_sql.take(session, key, per_minute, 60.0).allowed:
                quota[sender] += 1
        return quota

    def _check_limits(
        self,
        session: Session,
        mail: ReceivedMail,
        draft: Draft,
        sent: Counter[int],
        quota: Counter[str],
    ) -> None:
        """The sender's mails per minute (QUOTA: what is left of it for this group) and the
        account's SMS from mail per hour (SENT: what this group queued so far); raises
        Rejected."""
        sender_key = _sender(mail, draft)
        if quota[sender_key] <= 0:
            raise Rejected(
                "450 4.7.1 "
                + gettext(
                    "%(sender)s sent more than %(limit)s mails this minute "
                    "(smtp.mails_per_sender_per_minute); try again later",
                    sender=shown(sender_key),
                    limit=self.config.smtp.mails_per_sender_per_minute,
                )
            )
        quota[sender_key] -= 1
        account = draft.request.account
        assert isinstance(account, int)
        already = self.hourly.sent(session, account) + sent[account]
        limit = self.config.smtp.sms_per_account_per_hour
        if already + len(draft.request.recipients) > limit:
            raise Rejected(
                "450 4.7.1 "
                + gettext(
                    "this account already sent %(count)s SMS from mail in the last hour "
                    "(limit %(limit)s); try again later",
                    count=already,
                    limit=limit,
                )
            )

    def receive(self, env: MailEnvelope) -> ReceivedMail:
        """Read what needs no database from a mail (CPU only; never raises)."""
        with mime_depth(self.config.smtp.max_mime_depth):
            return receive(self.config, env)

    def check_sender(self, mail: ReceivedMail) -> ReceivedMail:
        """The hub's own DKIM/SPF/DMARC check of a mail no trusted relay vouched for
        (blocking DNS: from a worker thread); returns MAIL."""
        check_sender(mail, self.resolver)
        return mail

    def take(self, env: MailEnvelope) -> IntakeOutcome:
        """Take one mail in: commit its raw bytes and its SMS together, or refuse it.

        Mails arriving together share one transaction (group commit): one fsync and one
        lock for many, and still no 250 before the commit.
        """
        return self._group.submit(self.check_sender(self.receive(env)))

    def take_group(self, envs: list[MailEnvelope]) -> list[IntakeOutcome]:
        """Take mails that arrived together in one group (what concurrent ``take`` calls
        get); each outcome is the one ``take`` would give."""
        return self._group.submit_many([self.check_sender(self.receive(env)) for env in envs])

    async def take_async(self, mail: ReceivedMail, source: Hashable | None = None) -> IntakeOutcome:
        """``take`` for the event loop: waits for its group's commit without a thread of its
        own (MAIL comes from ``receive``; SOURCE is the connection it came on)."""
        return await self._group.submit_async(mail, source)

    def source_left(self, source: Hashable) -> None:
        """SOURCE (a connection given to ``take_async``) sends no more mail."""
        self._group.leave(source)

    def _take_batch(self, mails: list[ReceivedMail]) -> list[IntakeOutcome]:
        if len(mails) == 1:
            return [self._take_alone(mails[0])]
        try:
            outcomes = self._take_together(mails)
        except OperationalError:
            # The database, not a mail: every mail of the group waits for its retry.
            log.exception("mail intake failed; the senders' servers will retry")
            return [IntakeOutcome(accepted=False, reply=_TEMPORARY) for _ in mails]
        except _GroupUnpaid:
            # Taken one by one, the mails that can be paid are, in order; the others are told.
            outcomes = [None] * len(mails)
        except Exception:
            # One mail broke the group (or a copy of one was committed meanwhile by another
            # process): taken one by one, the others go through and only that one fails.
            log.warning(
                "a group of %d mails failed; taking them one by one", len(mails), exc_info=True
            )
            outcomes = [None] * len(mails)
        # None: a copy of another mail of the group, answered once that one is committed.
        return [
            o if o is not None else self._take_alone(m)
            for o, m in zip(outcomes, mails, strict=True)
        ]

    def _take_alone(self, mail: ReceivedMail) -> IntakeOutcome:
        for attempt in (1, 2):
            try:
                [outcome] = self._take_together([mail])
                assert outcome is not None
                return outcome
            except IntegrityError as exc:
                # The same mail committed meanwhile by another process: taken again, it
                # is found as already received.
                if attempt == 1:
                    continue
                log.exception("mail from %s could not be taken in", shown(mail.env.mail_from))
                return IntakeOutcome(accepted=False, reply=failure_reply(exc))
            except Exception as exc:
                log.exception("mail from %s could not be taken in", shown(mail.env.mail_from))
                return IntakeOutcome(accepted=False, reply=failure_reply(exc))
        raise AssertionError("both attempts return")  # pragma: no cover

    def _take_together(self, mails: list[ReceivedMail]) -> list[IntakeOutcome | None]:
        """Take MAILS in in one transaction; raises when it fails as a whole. None stands
        for a mail that is a copy of an earlier one of MAILS: take it again after the commit."""
        outcomes: list[IntakeOutcome | None] = [None] * len(mails)
        sent: Counter[int] = Counter()  # SMS from mail queued by this group, per account
        try:
            with self.connection.session() as session:
                self._take_in(session, mails, outcomes, sent)
        except BaseException:
            # What failed may be what the directory kept (an intake address removed since).
            self.directories.forget()
            raise
        # Committed: from here on nothing may turn the mails' 250 into an error.
        try:
            self.hourly.committed(sent)
        except Exception:
            log.exception("counting the SMS of committed mails failed (the mails are stored)")
        return outcomes

    def _take_in(
        self,
        session: Session,
        mails: list[ReceivedMail],
        outcomes: list[IntakeOutcome | None],
        sent: Counter[int],
    ) -> None:
        """The group's work in its transaction: fills in OUTCOMES, and SENT per account."""
        directory = self.directories.directory(session, (r for m in mails for r in m.env.rcpt_to))
        drafts: dict[int, Draft] = {}
        # Mails refused on an account's intake address: kept for its console, told to a
        # verified IMAP sender (hub.mail.intake.refusals).
        refused: list[tuple[ReceivedMail, str, int | None]] = []
        for index, mail in enumerate(mails):
            if mail.parsed is None:
                log.warning(
                    "mail from %s could not be read",
                    shown(mail.env.mail_from),
                    exc_info=mail.unreadable,
                )
                unreadable = mail.unreadable or InvalidInput("the mail cannot be read")
                outcomes[index] = IntakeOutcome(accepted=False, reply=failure_reply(unreadable))
                continue
            try:
                drafts[index] = self.read(session, mail, directory)
            except Rejected as exc:
                outcomes[index] = _refused(mail, exc)
                refused.append((mail, exc.reply, _intake_account(mail, directory)))
        submits = sending.SubmitBatch(session, self.config, RecipientLookups(_LOOKUP))
        earlier = _prepare(submits, mails, drafts) if drafts else {}
        taken: list[tuple[int, Draft, sending.SubmitResult]] = []
        # The mails that will be submitted (not earlier copies), counted per sender at once.
        wanted: Counter[str] = Counter()
        seen: set[tuple[int, str]] = set()
        for index, draft in drafts.items():
            key = _key(mails[index], draft)
            if key not in earlier and key not in seen:
                seen.add(key)
                wanted[_sender(mails[index], draft)] += 1
        quota = self._sender_quota(session, wanted)
        seen = set()
        for index, draft in drafts.items():
            mail = mails[index]
            key = _key(mail, draft)
            if key in earlier:
                outcomes[index] = _already_received(earlier[key])
            elif key not in seen:  # else a copy of a mail of this group: after the commit
                seen.add(key)
                try:
                    result = self._submit(
                        session, mail, draft, submits, sent, quota, len(mails) == 1
                    )
                except Rejected as exc:
                    outcomes[index] = _refused(mail, exc)
                    account = draft.request.account
                    refused.append((mail, exc.reply, account if isinstance(account, int) else None))
                    continue
                taken.append((index, draft, result))
        _settle_group(submits)
        submits.write()
        for mail, reply, account_id in refused:
            if account_id is not None and reply.startswith("5"):
                refusals.record(session, self.config, mail, account_id, reply)
        rows = [_inbound_row(mails[i], draft, result) for i, draft, result in taken]
        ids = session.connection().execute(_INSERT_INBOUND, rows).scalars().all() if rows else []
        for (index, draft, result), row, mail_id in zip(taken, rows, ids, strict=True):
            self._confirm(session, mails[index], draft, result, mail_id)
            outcomes[index] = IntakeOutcome(
                accepted=True,
                result=result,
                mail_id=mail_id,
                intake=draft.intake,
                parsed=draft.parsed,
                warnings=draft.warnings,
                reply=f"250 2.0.0 {_one_line(row['summary'])}",
            )

    def _submit(
        self,
        session: Session,
        mail: ReceivedMail,
        draft: Draft,
        submits: sending.SubmitBatch,
        sent: Counter[int],
        quota: Counter[str],
        alone: bool,
    ) -> sending.SubmitResult:
        """Check the limits and queue DRAFT's SMS, and charge them when the mail is ALONE in
        its transaction or has files (a group's charges are settled together); raises
        Rejected."""
        self._check_limits(session, mail, draft, sent, quota)
        account = draft.request.account
        assert isinstance(account, int)
        if draft.files:
            # Hosted files are written before the charge that may refuse the mail: the mail
            # gets a savepoint of its own, and the group's charges are settled before it.
            _settle_group(submits)
        with session.begin_nested() if draft.files else nullcontext():
            if draft.files:
                # Hosted only now, after the duplicate check: a mail sent twice hosts nothing
                # twice. The links are in the text submit counts, so they are charged.
                draft.request.text = links.attach_files(
                    session, self.config, account, draft.request.text, draft.files
                )
            try:
                result = submits.submit(draft.request)
                if not result.accepted:
                    reasons = "; ".join(f"{r.input}: {r.reason}" for r in result.recipients)
                    raise Rejected(f"550 5.1.3 no SMS sent: {_one_line(reasons)}")
                if alone or draft.files:
                    submits.settle()
            except InsufficientCredits as exc:
                raise Rejected(f"550 5.7.1 {exc}") from None
            except AccountDisabled as exc:
                raise Rejected(f"550 5.7.1 {exc}") from None
            except (InvalidInput, HubError) as exc:
                raise Rejected(f"550 5.6.0 {_one_line(str(exc))}") from None
        if draft.request.source == "mail":
            sent[account] += sum(r.status in {"queued", "scheduled"} for r in result.recipients)
        return result

    def _confirm(
        self,
        session: Session,
        mail: ReceivedMail,
        draft: Draft,
        result: sending.SubmitResult,
        mail_id: int,
    ) -> None:
        if (
            draft.intake is not None
            and draft.intake.confirm
            and self.config.smtp.confirmations
            and self.config.mail_out.enabled
        ):
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
                self.config,
                draft.parsed,
                result,
                draft.rejected,
                draft.request.account,
                mail_id,
                to,
            )

    def preview(
        self, raw: bytes, rcpt_to: list[str] | None = None, account: str | None = None
    ) -> dict[str, Any]:
        """The dry run of `smshub mail parse`: what would be sent, nothing written."""
        from hub.core import phone, segments

        parsed = mailparse.parse_mail(raw, max_depth=self.config.smtp.max_mime_depth)
        parts = mailparse.parse_subject(parsed.subject)
        rejected: list[dict[str, str]] = []
        members: list[str] = []
        track = False
        with session_scope(self.engine) as session:
            domains = number_domains(session)
            region = self.config.hub.default_region
            if account:
                from hub.sending.accounts import get_account

                acc = get_account(session, account)
                region = acc.default_region or region
                track = acc.track_links
                assert acc.id is not None
                members = _expand_lists(session, acc.id, parts.lists, rejected)
            else:
                rejected += [
                    {
                        "input": f"list:{n}",
                        "reason": "name the account (--account) to expand its contact lists",
                    }
                    for n in parts.lists
                ]
        by_address, _ = mailparse.numbers_from_addresses(
            (rcpt_to or []) + parsed.to + parsed.cc, domains
        )
        recipients: list[str] = []
        if not by_address:
            rejected += [{"input": u, "reason": "not a phone number"} for u in parts.unknown]
        for raw_number in list(parts.numbers) + members + by_address:
            info = phone.parse_number(raw_number, region)
            if not info.valid or info.e164 is None:
                rejected.append({"input": raw_number, "reason": info.reason or "invalid"})
            elif info.type == "landline":
                rejected.append(
                    {"input": raw_number, "reason": "a landline number cannot receive SMS"}
                )
            elif info.e164 not in recipients:
                recipients.append(info.e164)
        files, problems, logos = links.check_attachments(
            self.config, links.mail_attachments(raw, parsed.mime)
        )
        # Each file adds a short link of fixed length: shown with a placeholder code.
        placeholder = links.short_url(self.config, "x" * links.CODE_LENGTH)
        text = links.with_links(parsed.text, [placeholder] * len(files)) if files else parsed.text
        if track:
            # The account tracks clicks: every URL goes as a per-recipient short link.
            text = links.preview_text(self.config, text)
        count = segments.count(text)
        # The same words as a real intake, so that the warnings and the text agree.
        warnings = attachment_warnings(list(parsed.warnings), files, logos)
        warnings += [f"not sendable: {p}" for p in problems]
        if parsed.broken is not None:
            warnings.insert(0, f"refused: {parsed.broken}")
        if count.segments > self.config.sending.max_parts:
            warnings.append(
                f"the text needs {count.segments} parts; the limit is "
                f"{self.config.sending.max_parts}"
            )
        return {
            "recipients": recipients,
            "text": text,
            "segments": count.segments,
            "encoding": count.encoding,
            "rejected": rejected,
            "warnings": warnings,
            "tokens": {k: v for k, v in parts.tokens.items() if k != "pin"},
        }


def attachment_warnings(
    warnings: list[str], files: list[links.MailAttachment], logos: list[str]
) -> list[str]:
    """WARNINGS with each file the hub sends as a link said so, not "ignored"."""
    linked = {f"attachment {f.label} ignored" for f in files}
    kept = [w for w in warnings if w not in linked]
    kept += [f"{f.label} sent as a link" for f in files]
    kept += [f"image {name} left out" for name in logos]
    return kept


class _GroupUnpaid(Exception):
    """The credits of a group's mails could not all be charged."""


def _settle_group(submits: sending.SubmitBatch) -> None:
    """Charge the group's mails so far, or raise _GroupUnpaid (the group is rolled back)."""
    try:
        submits.settle()
    except InsufficientCredits:
        raise _GroupUnpaid from None


def _intake_account(mail: ReceivedMail, directory: IntakeDirectory) -> int | None:
    """The account whose intake address MAIL was sent to (one only), else None."""
    accounts = {i.account_id for i in (directory.find(r) for r in mail.env.rcpt_to) if i}
    return accounts.pop() if len(accounts) == 1 else None


def _sender(mail: ReceivedMail, draft: Draft) -> str:
    """Who the per-sender limit counts: the SMTP login, else the From, else MAIL FROM."""
    env = mail.env
    return (env.login.username if env.login else (draft.parsed.from_addr or env.mail_from)).lower()


def _key(mail: ReceivedMail, draft: Draft) -> tuple[int, str]:
    assert isinstance(draft.request.account, int)
    return draft.request.account, mail.dedupe_key


def _already_received(mail_id: int) -> IntakeOutcome:
    return IntakeOutcome(
        accepted=True,
        duplicate=True,
        mail_id=mail_id,
        reply=f"250 2.0.0 already received (mail {mail_id}); not sent again",
    )


def _refused(mail: ReceivedMail, exc: Rejected) -> IntakeOutcome:
    log.info("mail from %s refused: %s", shown(mail.env.mail_from), exc.reply)
    return IntakeOutcome(accepted=False, reply=exc.reply)


def _prepare(
    submits: sending.SubmitBatch, mails: list[ReceivedMail], drafts: dict[int, Draft]
) -> dict[tuple[int, str], int]:
    """Read what the DRAFTS' submissions need in one query, with the mails already taken
    in: (account, dedupe key) -> id of the stored mail."""
    keys = [_key(mails[i], d) for i, d in drafts.items()]
    found = submits.prepare(
        [d.request for d in drafts.values()],
        received_accounts=sorted({a for a, _ in keys}),
        received_keys=sorted({k for _, k in keys}),
    )
    return {(account, key): int(mail_id) for _, account, key, mail_id in found}


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


def _expand_lists(
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
