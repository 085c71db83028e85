"""What every mailbox source shares (IMAP, Microsoft Graph, Gmail API): the flow of a pass.

A pass lists the mails due, then, batch after batch: fetch them, hand each to the intake
(:class:`hub.ports.mail.MailIntake`) as if it had been sent to the configured intake
address, and file them by the answer:

- 2xx (queued, or already received): to the ``Processed`` folder;
- 5xx (refused for good): to the ``Failed`` folder, logged, and kept in :attr:`failed`;
- 4xx (try later): left where it is and tried again after a growing delay.

Nothing lost, nothing twice: a mail is filed only after ``take()`` returned, i.e. after it
and its SMS were committed; one taken but not filed (the process died) comes again,
``take()`` answers "already received", and it is filed then.

This base owns that flow, the counts, the record of refused mails and the after-intake
hook; a source fills in how it lists (``_begin_pass``), fetches (``_fetch``), files
(``_file``) and remembers a mail to retry (``_defer``), and its own connection loop.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Generic, TypeVar

from connectors.mail.mailbox_settings import ImapSourceSettings
from connectors.mail.message_facts import FailedMail, header_facts
from hub.core.timeutil import utcnow
from hub.errors import ConnectorError
from hub.mail.oauth import MailboxAccess
from hub.ports.mail import IntakeAnswer, MailEnvelope, MailIntake, OnAccepted, oversize_reply

#: Reconnect delays: the first one, doubled after each failure, up to the cap.
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 300.0
#: Longest wait before a mail answered 4xx is tried again.
RETRY_MAX = 3600.0
#: How many refused mails :attr:`MailboxSource.failed` remembers.
FAILED_RECORDS = 100


class ImapUnavailable(ConnectorError):
    """The mailbox could not be reached or used; the message says why in plain words."""


Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class Fetched(Generic[Key]):
    """A mail fetched for intake: RAW is the whole mail, or only its header when SIZE is
    over the limit (it is refused without being downloaded)."""

    key: Key
    raw: bytes
    size: int


def retry_delay(backoff: float, attempts: int) -> float:
    """The wait before the ATTEMPTS-th try of a mail answered 4xx: doubling, capped."""
    return float(min(backoff * 2 ** (attempts - 1), RETRY_MAX))


class MailboxSource(ABC, Generic[Key]):
    """Reads one mailbox folder and hands each mail to the intake (see the module).

    ``on_accepted(answer)`` is called in the event loop for each newly accepted mail (e.g.
    to wake the dispatcher). KEY is what names a mail in the folder (an IMAP UID, an API id).
    """

    #: What the registry validates an ``[[imap]]`` table with (one model for every transport).
    settings_model: ClassVar[type[ImapSourceSettings]] = ImapSourceSettings
    # Class attributes rather than settings: tests shorten them, sysadmins need not.
    reconnect_initial = RECONNECT_INITIAL
    reconnect_max = RECONNECT_MAX
    #: Mails fetched, taken and filed together.
    batch_size = 1
    #: The source's logger; "IMAP source" or "mail source" in messages.
    log: ClassVar[logging.Logger]
    kind: ClassVar[str] = "mail source"
    #: How filing a refused mail is said in the log.
    filing: ClassVar[str] = "filing it in"
    #: Whether the pass summary counts the mails waiting for their retry.
    summary_waiting: ClassVar[bool] = False

    def __init__(
        self,
        settings: ImapSourceSettings,
        policy: MailIntake | None,
        *,
        on_accepted: OnAccepted | None,
        access: MailboxAccess | None,
        thread_name: str,
    ) -> None:
        self.settings = settings
        # The mailbox's sign-in (auth = "xoauth2") and where its activity is noted.
        self.access = access
        # None: a source that only checks its mailbox (the console's "test").
        self.policy = policy
        self.on_accepted = on_accepted
        self.label = settings.label
        #: connecting, processing, idle, polling, backoff or stopped.
        self.state = "stopped"
        #: The last connection problem, in words (None once a pass succeeded).
        self.last_error: str | None = None
        #: Counts of the last pass.
        self.last_pass: dict[str, Any] | None = None
        #: The latest mails refused for good, oldest first.
        self.failed: deque[FailedMail] = deque(maxlen=FAILED_RECORDS)
        # One thread does the source's blocking work; the loop only awaits what it does.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[None] | None = None
        self._closed = False

    # -- what a source fills in --------------------------------------------------------------
    @abstractmethod
    def _begin_pass(self) -> tuple[dict[str, Any], list[Key]]:
        """Open the folder: the pass's counts so far (see ``_counts``) and the mails due."""

    @abstractmethod
    def _fetch(self, keys: list[Key], stats: dict[str, Any]) -> Iterable[Fetched[Key]]:
        """The mails of KEYS still in the folder (the header only of one over the limit)."""

    @abstractmethod
    def _file(self, keys: list[Key], processed: bool, stats: dict[str, Any]) -> None:
        """Move KEYS to Processed (or Failed), counting them in ``moved``; defer those that
        cannot be moved (the next try answers "already received")."""

    @abstractmethod
    def _end_pass(self, stats: dict[str, Any]) -> None:
        """What follows a pass (a cursor to store, retries to keep)."""

    @abstractmethod
    def _defer(self, key: Key, reason: str) -> None:
        """Leave the mail KEY in the folder and try it again after a growing delay."""

    @abstractmethod
    def _stopping_now(self) -> bool:
        """Whether ``stop()`` was called (the pass ends after the current batch)."""

    @abstractmethod
    def _waiting_retry(self) -> int:
        """How many mails wait for their retry."""

    @abstractmethod
    def _run_once_sync(self) -> dict[str, Any]:
        """One pass in the worker thread; raises ImapUnavailable."""

    # -- the asyncio side --------------------------------------------------------------------
    async def run_once(self) -> dict[str, Any]:
        """One pass (connect if needed, fetch, take, file); raises ImapUnavailable."""
        if self._task is not None:
            raise RuntimeError("the background loop is running; call wake() instead")
        if self._closed:
            raise RuntimeError(f"{self.kind} {self.label} was stopped")
        self._loop = asyncio.get_running_loop()
        return await self._loop.run_in_executor(self._executor, self._run_once_sync)

    def status(self) -> dict[str, Any]:
        """What the source is doing, for status pages and the CLI."""
        return {
            "name": self.label,
            "state": self.state,
            "last_error": self.last_error,
            "last_pass": self.last_pass,
            "waiting_retry": self._waiting_retry(),
            "failed": [asdict(f) for f in list(self.failed)[-10:]],
        }

    # -- one pass (worker thread) ------------------------------------------------------------
    def _counts(self, **first: Any) -> dict[str, Any]:
        """A pass's counts, after FIRST (what names the folder)."""
        counts = dict.fromkeys(
            ("found", "waiting", "accepted", "duplicates", "failed", "deferred", "moved"), 0
        )
        return {"folder": self.settings.folder, **first, **counts}

    def _pass(self) -> dict[str, Any]:
        intake = self.policy
        if intake is None:
            raise RuntimeError("a source built without an intake policy only checks")
        stats, due = self._begin_pass()
        for start in range(0, len(due), self.batch_size):
            if self._stopping_now():
                break
            self._take_batch(intake, due[start : start + self.batch_size], stats)
        self._end_pass(stats)
        if stats["found"]:
            self._summary(stats)
        return stats

    def _take_batch(self, intake: MailIntake, keys: list[Key], stats: dict[str, Any]) -> None:
        filed: dict[bool, list[Key]] = {True: [], False: []}
        for mail in self._fetch(keys, stats):
            reply = oversize_reply(mail.size, intake.max_message_size)
            if reply is None:
                reply = self._take(intake, mail.raw, stats)
            if reply.startswith("4"):
                stats["deferred"] += 1
                self._defer(mail.key, f"the hub answered {reply!r}")
                continue
            if reply.startswith("5"):
                self._refused(mail.key, mail.raw, reply)
            filed[reply.startswith("2")].append(mail.key)
        stats["failed"] += len(filed[False])
        # Only now, with take() returned for each of them, do they leave the folder.
        self._file(filed[True], True, stats)
        self._file(filed[False], False, stats)

    def _take(self, intake: MailIntake, raw: bytes, stats: dict[str, Any]) -> str:
        """Hand RAW to the intake as mail to the configured intake address; its reply."""
        answer = intake.take(
            MailEnvelope(
                raw=raw,
                mail_from=header_facts(raw)[0],
                rcpt_to=[self.settings.intake_address],
                source="imap",
                authserv_ids=tuple(i.lower() for i in self.settings.trusted_authserv_id),
            )
        )
        if answer.reply.startswith("2"):
            stats["duplicates" if answer.duplicate else "accepted"] += 1
            if not answer.duplicate:
                self._notify(answer)
        return answer.reply

    def _summary(self, stats: dict[str, Any]) -> None:
        message = "%s: %d mail(s): %d accepted, %d already received, %d refused, %d to retry"
        args = [stats[k] for k in ("found", "accepted", "duplicates", "failed", "deferred")]
        if self.summary_waiting:
            message += ", %d waiting"
            args.append(stats["waiting"])
        self.log.info(message, self.label, *args)

    def _refused(self, key: Key, raw: bytes, reply: str) -> None:
        sender, from_addr, message_id, subject = header_facts(raw)
        uid = key if isinstance(key, int) else 0
        record = FailedMail(utcnow(), uid, message_id, from_addr or sender, subject, reply)
        self.failed.append(record)
        self.log.warning(
            "%s: mail %s from %s refused, %s %r: %s",
            self.label,
            message_id or f"uid {key}",
            record.sender or "an unknown sender",
            self.filing,
            self.settings.failed_folder,
            reply,
        )

    def _notify(self, answer: IntakeAnswer) -> None:
        loop, hook = self._loop, self.on_accepted
        if hook is None or loop is None or loop.is_closed():
            return

        def call() -> None:
            try:
                hook(answer)
            except Exception:
                self.log.exception("after-intake hook failed (the mail is safely stored)")

        loop.call_soon_threadsafe(call)

    def _record(self, error: str | None = None) -> None:
        if self.access is not None:
            self.access.record(f"read {self.settings.folder}", error=error)
