"""The intake policy: one mail in, SMS queued (or a reason why not) out.

The SMTP listener and the IMAP poller both hand raw mail here (the mailbox doors through
the :class:`hub.ports.mail.MailIntake` port this implements). A mail is accepted only
after its raw bytes (with their hash) and the SMS it produced are committed in one
transaction; the same Message-ID on the same account is sent once.

Mails that arrive together are taken in together (group commit, on a thread and a
connection of its own): read without the database first (``receive``: parse, subject,
attachments, sender verdict), then checked, charged and written in one transaction
(:mod:`hub.mail.intake.transaction`). Each mail still gets the answer it would get alone: a
group that cannot be paid as a whole, or that one mail breaks, is taken again one mail at a
time, so only that mail is refused.

The policy coordinates; each step is a module of its own: RCPT TO (``rcpt``), reading and
authorizing a mail (``draft``, ``authorize``), the limits (``quota``), the transaction
(``transaction``), the answers (``outcome``) and the dry run (``preview``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from hub.core.config import Config
from hub.mail.intake import rcpt
from hub.mail.intake.directory import DirectoryCache, IntakeDirectory
from hub.mail.intake.draft import Draft, read_mail
from hub.mail.intake.group_commit import GroupCommit
from hub.mail.intake.limits import HourlyCount
from hub.mail.intake.outcome import TEMPORARY, IntakeOutcome, Rejected, failure_reply
from hub.mail.intake.preview import preview
from hub.mail.intake.rcpt_cache import RcptCache
from hub.mail.intake.received import MailEnvelope, ReceivedMail, check_sender, receive
from hub.mail.intake.resolver import make_resolver
from hub.mail.intake.smtp_text import shown
from hub.mail.intake.transaction import GroupUnpaid, IntakeTransaction
from hub.mail.parse.structure import mime_depth
from hub.ports.mail import MailLogin
from hub.store.db import WorkerConnection

__all__ = [
    "Draft",
    "IntakeOutcome",
    "IntakePolicy",
    "MailEnvelope",
    "Rejected",
    "failure_reply",
]

log = logging.getLogger("smshub.intake")

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

    @property
    def max_message_size(self) -> int:
        """The largest mail taken in (``[smtp] max_message_size``), for the mailbox doors."""
        return self.config.smtp.max_message_size

    # -- RCPT TO ----------------------------------------------------------------------------
    def check_rcpt(self, address: str, login: MailLogin | None) -> str | None:
        """None if ADDRESS is one of our intake addresses (and LOGIN may use it), else a reply."""
        return rcpt.check_rcpt(self.engine, self.config, self.rcpts, address, login)

    def cached_rcpt_reply(self, address: str, login: MailLogin | None) -> tuple[bool, str | None]:
        """(True, what ``check_rcpt`` answers) for an intake address found lately, without a
        query; (False, None) when only ``check_rcpt`` can tell."""
        return rcpt.cached_rcpt_reply(self.config, self.rcpts, address, login)

    # -- the mail ---------------------------------------------------------------------------
    def read(self, session: Session, mail: ReceivedMail, directory: IntakeDirectory) -> Draft:
        """Authorize a parsed mail and build its submit request; raises Rejected.

        DIRECTORY holds the intake addresses of the mail's recipients."""
        return read_mail(session, self.config, mail, directory)

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

    def preview(
        self, raw: bytes, rcpt_to: list[str] | None = None, account: str | None = None
    ) -> dict[str, Any]:
        """The dry run of `smshub mail parse`: what would be sent, nothing written."""
        return preview(self.engine, self.config, raw, rcpt_to, account)

    # -- the group commit -------------------------------------------------------------------
    def _take_batch(self, mails: list[ReceivedMail]) -> list[IntakeOutcome]:
        if len(mails) == 1:
            return [self._take_alone(mails[0])]
        try:
            outcomes = self._take_together(mails)
        except OperationalError:
            # The database, not a mail: every mail of the group waits for its retry.
            log.exception("mail intake failed; the senders' servers will retry")
            return [IntakeOutcome(accepted=False, reply=TEMPORARY) for _ in mails]
        except GroupUnpaid:
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
        try:
            with self.connection.session() as session:
                recipients = (r for m in mails for r in m.env.rcpt_to)
                directory = self.directories.directory(session, recipients)
                group = IntakeTransaction(session, self.config, self.hourly, directory, mails)
                group.run()
        except BaseException:
            # What failed may be what the directory kept (an intake address removed since).
            self.directories.forget()
            raise
        # Committed: from here on nothing may turn the mails' 250 into an error.
        try:
            self.hourly.committed(group.sent)
        except Exception:
            log.exception("counting the SMS of committed mails failed (the mails are stored)")
        return group.outcomes
