"""The intake policy: one mail in, SMS queued (or a reason why not) out.

The SMTP listener and the IMAP poller both hand raw mail here. A mail is accepted only
after its raw bytes (with their hash) and the SMS it produced are committed in one
transaction; the same Message-ID on the same account is sent once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub import contacts, links, mailparse, sending
from hub.accounts import ancestors
from hub.config import Config
from hub.db import read_scope, session_scope
from hub.errors import AccountDisabled, HubError, InsufficientCredits, InvalidInput, NotFound
from hub.intake.addresses import (
    MailLogin,
    find_intake,
    number_domains,
    pin_hash,
    sender_allowed,
)
from hub.intake.confirm import queue_confirmation
from hub.intake.replies import ReplyRefused, check_reply_rcpt, read_reply, reply_addresses
from hub.intake.sender_auth import from_is_authenticated
from hub.models import Account, InboundMail, IntakeAddress, IntakeKind, Message
from hub.replytokens import is_reply_address
from hub.timeutil import utcnow

log = logging.getLogger("smshub.intake")


@dataclass(frozen=True)
class MailEnvelope:
    """A mail as a door received it."""

    raw: bytes
    mail_from: str
    rcpt_to: list[str]
    login: MailLogin | None = None
    source: str = "smtp"


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

    @property
    def permanent(self) -> bool:
        """A 5xx: the sender's server bounces it to the person, who learns why."""
        return self.reply.startswith("5")


class Rejected(Exception):
    """A mail refused with an SMTP reply."""

    def __init__(self, reply: str) -> None:
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


class SlidingWindow:
    """At most LIMIT events per key in WINDOW seconds (per process)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.events: dict[str, deque[float]] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            q = self.events[key]
            while q and q[0] < now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TEMPORARY = "451 4.3.0 temporary failure; please try again later"


class GroupCommit:
    """Runs work items that arrive together as one batch, on the thread of whichever caller
    found no batch running (leader/follower); every caller gets its own result."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int = 64) -> None:
        self.run = run
        self.max_batch = max_batch
        self.lock = threading.Lock()
        self.pending: list[tuple[Any, Future[Any]]] = []
        self.running = False

    def submit(self, item: Any) -> Any:
        future: Future[Any] = Future()
        with self.lock:
            self.pending.append((item, future))
            lead = not self.running
            self.running = True
        while lead:
            with self.lock:
                batch = self.pending[: self.max_batch]
                del self.pending[: self.max_batch]
                if not batch:
                    self.running = False
                    break
            try:
                results = self.run([item for item, _ in batch])
                for (_, fut), result in zip(batch, results, strict=True):
                    fut.set_result(result)
            except BaseException as exc:  # never leave a follower waiting forever
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
        return future.result()


class IntakePolicy:
    """Decides about each mail; blocking (database), so doors call it from a worker thread."""

    def __init__(self, engine: Engine, config: Config) -> None:
        self.engine = engine
        self.config = config
        self.per_sender = SlidingWindow(config.smtp.mails_per_sender_per_minute, 60.0)
        self._batcher = GroupCommit(self._take_batch)

    # -- RCPT TO ----------------------------------------------------------------------------
    def check_rcpt(self, address: str, login: MailLogin | None) -> str | None:
        """None if ADDRESS is one of our intake addresses (and LOGIN may use it), else a reply."""
        with read_scope(self.engine) as session:
            if is_reply_address(address, self.config.smtp.reply_domain):
                return check_reply_rcpt(session, address)
            intake = find_intake(session, address)
            if intake is None:
                return (
                    f"550 5.7.1 <{address}> is not an SMS intake address of this hub "
                    "(relaying denied)"
                )
            if login is not None and not self._may_use(session, login, intake):
                return f"550 5.7.1 {login.username} may not send through <{address}>"
        return None

    def _may_use(self, session: Session, login: MailLogin, intake: IntakeAddress) -> bool:
        owner = session.get(Account, intake.account_id)
        return owner is not None and any(
            a.id == login.account_id for a in ancestors(session, owner)
        )

    # -- the mail ---------------------------------------------------------------------------
    def read(self, session: Session, env: MailEnvelope) -> Draft:
        """Parse and authorize a mail and build its submit request; raises Rejected."""
        parsed = mailparse.parse_mail(env.raw)
        replies = reply_addresses(env.rcpt_to, self.config)
        if replies:
            try:
                reply = read_reply(session, self.config, replies[0], parsed, env.login)
            except ReplyRefused as exc:
                raise Rejected(f"550 5.7.1 your answer was not sent by SMS: {exc}") from None
            return Draft(None, parsed, reply.request, [], list(parsed.warnings))
        intakes = [i for i in (find_intake(session, r) for r in env.rcpt_to) if i is not None]
        if not intakes:
            raise Rejected("550 5.1.1 no SMS intake address among the recipients")
        if len({i.account_id for i in intakes}) > 1:
            raise Rejected(
                "550 5.7.1 one mail can send on one account only; "
                "write to each account's address separately"
            )
        intake = next((i for i in intakes if i.kind == IntakeKind.SUBJECT), intakes[0])
        self._authorize(session, env, parsed, intake)

        parts = mailparse.parse_subject(parsed.subject)
        if intake.pin_hash and pin_hash(parts.tokens.get("pin", "")) != intake.pin_hash:
            raise Rejected("550 5.7.1 wrong or missing PIN: put pin:NNNN in the subject")
        warnings = list(parsed.warnings)
        rejected: list[dict[str, str]] = []
        numbers = list(parts.numbers)
        domains = number_domains(session)
        from_address, _ = mailparse.numbers_from_addresses(env.rcpt_to, domains)
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
            raise Rejected(f"550 5.1.3 no phone number to send to: {_one_line(reasons)}")
        if not numbers:
            raise Rejected(
                "550 5.1.3 no phone number found in the subject "
                f"'{_one_line(parsed.subject, 80)}': write the numbers in the subject, "
                "separated by commas"
            )
        # PNG/GIF/JPEG/PDF attachments go as short links appended to the text; images the
        # body shows inline are signature logos and are left out.
        files, problems, logos = links.check_attachments(
            self.config, links.mail_attachments(env.raw)
        )
        if problems:
            raise Rejected(
                "550 5.6.0 only PNG, GIF, JPEG and PDF attachments can be sent by SMS (as "
                f"links): {'; '.join(problems)}; remove it or send it another way"
            )
        linked = {f"attachment {f.label} ignored" for f in files}
        warnings = [w for w in warnings if w not in linked]
        warnings += [f"{f.label} sent as a link" for f in files]
        warnings += [f"image {name} left out" for name in logos]
        if not parsed.text.strip() and not files:
            raise Rejected("550 5.6.0 the mail has no text: write the SMS in the body")
        account = session.get(Account, intake.account_id)
        assert account is not None and account.id is not None
        key = parsed.message_id or hashlib.sha256(env.raw).hexdigest()
        request = sending.SubmitRequest(
            account=account.id,
            recipients=numbers,
            text=parsed.text,
            sender=parts.tokens.get("sender") or intake.sender,
            type=parts.tokens.get("type", "alert"),
            source="mail",
            idempotency_key=f"mail:{account.id}:{key}",
        )
        return Draft(intake, parsed, request, rejected, warnings, files)

    def _authorize(
        self,
        session: Session,
        env: MailEnvelope,
        parsed: mailparse.ParsedMail,
        intake: IntakeAddress,
    ) -> None:
        if env.login is not None:
            if not self._may_use(session, env.login, intake):
                raise Rejected(f"550 5.7.1 {env.login.username} may not send through this address")
            return
        if env.source == "imap" and (intake.require_auth or not intake.allowed_senders.strip()):
            # Anyone can write to a mailbox: only allowed senders vouched for by a trusted
            # relay can use it.
            raise Rejected(
                "530 5.7.0 this intake address accepts only SMTP AUTH users, so it "
                "cannot be fed from a mailbox; give it allowed senders instead"
            )
        if intake.require_auth or not intake.allowed_senders.strip():
            raise Rejected(
                "530 5.7.0 authentication required: log in with SMTP AUTH "
                "(after STARTTLS) to send SMS through this address"
            )
        if not sender_allowed(intake, parsed.from_addr):
            raise Rejected(
                f"550 5.7.1 {parsed.from_addr or 'this sender'} is not allowed to "
                "send SMS through this address"
            )
        ok, why = from_is_authenticated(
            parsed.get_header("Authentication-Results"),
            parsed.from_addr,
            self.config.smtp.trusted_relays,
        )
        if not ok:
            raise Rejected(
                f"550 5.7.1 could not verify that this mail is from {parsed.from_addr}: {why}"
            )

    def _hourly_budget(self, session: Session, account_id: int, wanted: int) -> None:
        since = utcnow() - timedelta(hours=1)
        sent = session.exec(
            select(func.count())
            .select_from(Message)
            .where(
                Message.account_id == account_id,
                Message.source == "mail",
                col(Message.created_at) >= since,
            )
        ).one()
        limit = self.config.smtp.sms_per_account_per_hour
        if int(sent) + wanted > limit:
            raise Rejected(
                f"450 4.7.1 this account already sent {sent} SMS from mail in the "
                f"last hour (limit {limit}); try again later"
            )

    def take(self, env: MailEnvelope) -> IntakeOutcome:
        """Take one mail in: commit its raw bytes and its SMS together, or refuse it.

        Mails arriving together share one transaction (group commit, each in its own
        savepoint): one fsync and one lock for many, and still no 250 before the commit.
        """
        return self._batcher.submit(env)

    def _take_batch(self, envs: list[MailEnvelope]) -> list[IntakeOutcome]:
        outcomes: list[IntakeOutcome | None] = [None] * len(envs)
        retry: list[int] = []
        try:
            with session_scope(self.engine) as session:
                for index, env in enumerate(envs):
                    try:
                        with session.begin_nested():
                            outcomes[index] = self._take_in(session, env)
                    except Rejected as exc:
                        log.info("mail from %s refused: %s", env.mail_from, exc.reply)
                        outcomes[index] = IntakeOutcome(accepted=False, reply=exc.reply)
                    except IntegrityError:
                        # The same mail committed meanwhile by another process: take it
                        # again after this batch, when the first copy is visible.
                        retry.append(index)
                    except Exception:
                        # One broken mail must not fail the others of its batch.
                        log.exception("mail from %s could not be taken in", env.mail_from)
                        outcomes[index] = IntakeOutcome(accepted=False, reply=_TEMPORARY)
        except Exception:
            log.exception("mail intake failed; the senders' servers will retry")
            return [IntakeOutcome(accepted=False, reply=_TEMPORARY) for _ in envs]
        for index in retry:
            outcomes[index] = self._take_batch([envs[index]])[0]
        return [o for o in outcomes if o is not None]

    def _take_in(self, session: Session, env: MailEnvelope) -> IntakeOutcome:
        sha = hashlib.sha256(env.raw).hexdigest()
        draft = self.read(session, env)
        assert isinstance(draft.request.account, int)
        dedupe = draft.parsed.message_id or sha
        existing = session.exec(
            select(InboundMail).where(
                InboundMail.account_id == draft.request.account,
                InboundMail.dedupe_key == dedupe,
            )
        ).first()
        if existing is not None:
            return IntakeOutcome(
                accepted=True,
                duplicate=True,
                mail_id=existing.id,
                reply=f"250 2.0.0 already received (mail {existing.id}); not sent again",
            )
        sender_key = (
            env.login.username if env.login else (draft.parsed.from_addr or env.mail_from)
        ).lower()
        if not self.per_sender.allow(sender_key):
            raise Rejected(
                f"450 4.7.1 {sender_key} sent more than "
                f"{self.config.smtp.mails_per_sender_per_minute} mails this "
                "minute; try again later"
            )
        self._hourly_budget(session, draft.request.account, len(draft.request.recipients))
        if draft.files:
            # Hosted only now, after the duplicate check: a mail sent twice hosts nothing
            # twice. The links are in the text submit counts, so they are charged.
            draft.request.text = links.attach_files(
                session, self.config, draft.request.account, draft.request.text, draft.files
            )
        try:
            result = sending.submit_in(session, self.config, draft.request)
        except InsufficientCredits as exc:
            raise Rejected(f"550 5.7.1 {exc}") from None
        except AccountDisabled as exc:
            raise Rejected(f"550 5.7.1 {exc}") from None
        except (InvalidInput, HubError) as exc:
            raise Rejected(f"550 5.6.0 {_one_line(str(exc))}") from None
        if not result.accepted:
            reasons = "; ".join(f"{r.input}: {r.reason}" for r in result.recipients)
            raise Rejected(f"550 5.1.3 no SMS sent: {_one_line(reasons)}")
        mail = InboundMail(
            account_id=draft.request.account,
            intake_address_id=draft.intake.id if draft.intake else None,
            dedupe_key=dedupe,
            message_id=draft.parsed.message_id,
            sha256=sha,
            raw=env.raw,
            source=env.source,
            mail_from=env.mail_from[:255],
            rcpt_to="\n".join(env.rcpt_to),
            subject=draft.parsed.subject[:500],
            batch_id=result.batch_id,
            summary=summarize(result, draft.rejected),
        )
        session.add(mail)
        session.flush()
        assert mail.id is not None
        if (
            draft.intake is not None
            and draft.intake.confirm
            and self.config.smtp.confirmations
            and self.config.mail_out.enabled
        ):
            queue_confirmation(
                session,
                self.config,
                draft.parsed,
                result,
                draft.rejected,
                draft.request.account,
                mail.id,
                env.mail_from,
            )
        return IntakeOutcome(
            accepted=True,
            result=result,
            mail_id=mail.id,
            intake=draft.intake,
            parsed=draft.parsed,
            warnings=draft.warnings,
            reply=f"250 2.0.0 {_one_line(mail.summary)}",
        )

    def preview(
        self, raw: bytes, rcpt_to: list[str] | None = None, account: str | None = None
    ) -> dict[str, Any]:
        """The dry run of `smshub mail parse`: what would be sent, nothing written."""
        from hub import phone, segments

        parsed = mailparse.parse_mail(raw)
        parts = mailparse.parse_subject(parsed.subject)
        rejected: list[dict[str, str]] = []
        members: list[str] = []
        with session_scope(self.engine) as session:
            domains = number_domains(session)
            region = self.config.hub.default_region
            if account:
                from hub.accounts import get_account

                acc = get_account(session, account)
                region = acc.default_region or region
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
        files, problems, _ = links.check_attachments(self.config, links.mail_attachments(raw))
        # Each file adds a short link of fixed length: shown with a placeholder code.
        placeholder = links.short_url(self.config, "x" * links.CODE_LENGTH)
        text = links.with_links(parsed.text, [placeholder] * len(files)) if files else parsed.text
        count = segments.count(text)
        warnings = list(parsed.warnings) + [f"not sendable: {p}" for p in problems]
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
