"""Mailbox intake through a provider's mail API (``[[imap]] transport = "graph"/"gmail"``):
the same job as :mod:`connectors.mail.imap_source`, the same interface, the same answers.

Each pass asks the API what is new in the folder since the last pass (Graph delta query,
Gmail history; the cursor kept in the connector state store, so any instance carries on
where another stopped), fetches each mail's MIME, hands it to :meth:`IntakePolicy.take` as
if it had been sent to the intake address, then files it:

- 2xx: to ``Processed``; 5xx: to ``Failed`` (noted in :attr:`ApiMailSource.failed`);
- 4xx: left where it is and tried again after a growing delay (its id kept in the state
  store too, since the cursor has already passed it).

Nothing lost, nothing twice: the cursor is stored only after every mail it covers was taken
and filed; a mail taken but not filed (the process died) comes again, ``take()`` answers
"already received" and it is filed then. The API is polled every ``poll_interval`` seconds
(``wake()`` for sooner). A failing pass is retried with backoff, like a lost IMAP link.

Subclasses say how one API lists, fetches and files a mail; HTTP blocks, so passes run in
one worker thread per source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from connectors.mail.api_client import MailApi, MailApiError
from connectors.mail.imap_source import (
    FAILED_RECORDS,
    RECONNECT_INITIAL,
    RECONNECT_MAX,
    RETRY_MAX,
    ImapSourceSettings,
    ImapUnavailable,
)
from connectors.mail.message_facts import FailedMail, header_facts
from hub.core.timeutil import utcnow
from hub.errors import ConfigError, MailboxAuthError
from hub.mail.intake.policy import IntakeOutcome, IntakePolicy, MailEnvelope
from hub.mail.oauth import MailboxAccess

log = logging.getLogger("smshub.mail_api")

RETRY_KEY = "api_retry"  # {message id: [attempts, due (epoch seconds)]}


class ApiMailSource:
    """Reads one folder through a mail API; subclasses implement the ``_api_*`` methods."""

    #: What the registry validates the ``[[imap]]`` table with (one model for every transport).
    settings_model = ImapSourceSettings
    reconnect_initial = RECONNECT_INITIAL
    reconnect_max = RECONNECT_MAX
    #: The API's name in messages ("Microsoft Graph", "Gmail API").
    api_name = ""

    def __init__(
        self,
        settings: ImapSourceSettings,
        policy: IntakePolicy | None,
        password: str = "",
        *,
        on_accepted: Callable[[IntakeOutcome], Any] | None = None,
        access: MailboxAccess | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if access is None or not access.oauth:
            raise ConfigError(
                f"mailbox {settings.label}: transport = {settings.transport!r} needs the hub's "
                'database and auth = "xoauth2"'
            )
        self.settings = settings
        self.access = access
        self.policy = policy
        self.on_accepted = on_accepted
        self.label = settings.label
        self.state = "stopped"
        self.last_error: str | None = None
        self.last_pass: dict[str, Any] | None = None
        self.failed: deque[FailedMail] = deque(maxlen=FAILED_RECORDS)
        self._clock = clock or (lambda: utcnow().timestamp())
        self.api = self._make_api()
        self._ready = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smshub-mailapi")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._closed = False

    # -- what a subclass provides ------------------------------------------------------------
    def _make_api(self) -> MailApi:
        raise NotImplementedError

    def _api_prepare(self) -> None:
        """Find the folders (creating Processed and Failed when missing)."""
        raise NotImplementedError

    def _api_changes(self) -> tuple[list[str], Any]:
        """Ids of mails that arrived in the folder since the stored cursor, and the new cursor
        (stored by :meth:`_api_commit` once they are handled)."""
        raise NotImplementedError

    def _api_commit(self, cursor: Any) -> None:
        raise NotImplementedError

    def _api_raw(self, message_id: str) -> bytes | None:
        """The MIME of a mail still in the folder; None when it left it."""
        raise NotImplementedError

    def _api_file(self, message_id: str, processed: bool) -> None:
        """Move (label) the mail to Processed or Failed."""
        raise NotImplementedError

    def _api_count(self) -> str:
        """The folder's counts in words (the "test" button)."""
        raise NotImplementedError

    # -- the asyncio side (as ImapSource) ----------------------------------------------------
    async def start(self) -> None:
        if self._closed:
            raise RuntimeError(f"mail source {self.label} was stopped; make a new one")
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._task = asyncio.create_task(self._serve())
        log.info(
            "%s: reading mail for %s through the %s (every %s s)",
            self.label,
            self.settings.intake_address,
            self.api_name,
            f"{self.settings.poll_interval:g}",
        )

    async def stop(self) -> None:
        if self._closed:
            return
        self._stopping = True
        self.wake()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), self.settings.timeout + 5)
            self._task = None
        self.discard()
        self.state = "stopped"

    async def run_once(self) -> dict[str, Any]:
        """One pass; raises ImapUnavailable (the intake's one "mailbox unusable" error)."""
        if self._task is not None:
            raise RuntimeError("the background loop is running; call wake() instead")
        if self._closed:
            raise RuntimeError(f"mail source {self.label} was stopped")
        self._loop = asyncio.get_running_loop()
        return await self._loop.run_in_executor(self._executor, self._run_once_sync)

    def wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "state": self.state,
            "last_error": self.last_error,
            "last_pass": self.last_pass,
            "waiting_retry": len(self._retries()),
            "failed": [asdict(f) for f in list(self.failed)[-10:]],
        }

    def discard(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False)
        self.api.close()

    def check(self) -> str:
        """Sign in and count the folder, changing nothing but missing folders (blocking)."""
        try:
            self._api_prepare()
            counts = self._api_count()
        except (MailApiError, MailboxAuthError) as exc:
            self._record(error=str(exc))
            raise ImapUnavailable(f"{self.label}: {exc}") from exc
        self._record()
        return f"signed in to the {self.api_name} and read {self.settings.folder!r}: {counts}"

    async def _serve(self) -> None:
        assert self._loop is not None and self._wakeup is not None
        delay = self.reconnect_initial
        while not self._stopping:
            wait = self.settings.poll_interval
            try:
                await self._loop.run_in_executor(self._executor, self._run_once_sync)
                delay = self.reconnect_initial
                retries = self._retries()
                if retries:
                    soonest = min(due for _, due in retries.values()) - self._clock()
                    wait = max(0.0, min(wait, soonest))
                self.state = "polling"
            except ImapUnavailable as exc:
                log.warning("%s; trying again in %.0f s", exc, delay)
                wait, delay = delay, min(delay * 2, self.reconnect_max)
                self.state = "backoff"
            except Exception:
                log.exception("%s: unexpected error in the mail API loop", self.label)
                wait, delay = delay, min(delay * 2, self.reconnect_max)
                self.state = "backoff"
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
            self._wakeup.clear()

    # -- the worker thread -------------------------------------------------------------------
    def _run_once_sync(self) -> dict[str, Any]:
        try:
            if not self._ready:
                self._api_prepare()
                self._ready = True
            stats = self._pass()
        except (MailApiError, MailboxAuthError) as exc:
            self.last_error = str(exc)
            self._record(error=self.last_error)
            raise ImapUnavailable(f"{self.label}: {exc}") from exc
        self.last_error = None
        self.last_pass = stats
        self._record()
        return stats

    def _pass(self) -> dict[str, Any]:
        if self.policy is None:
            raise RuntimeError("a source built without an intake policy only checks")
        self.state = "processing"
        stats: dict[str, Any] = {
            "folder": self.settings.folder,
            "found": 0,
            "waiting": 0,
            "accepted": 0,
            "duplicates": 0,
            "failed": 0,
            "deferred": 0,
            "moved": 0,
        }
        new, cursor = self._api_changes()
        retries = self._retries()
        now = self._clock()
        due = [i for i, (_, when) in retries.items() if when <= now]
        stats["waiting"] = len(retries) - len(due)
        todo = list(dict.fromkeys([*due, *(i for i in new if i not in retries)]))
        for message_id in todo:
            if self._stopping:
                break
            self._one(message_id, retries, stats)
        self._keep_retries(retries)
        if not self._stopping:
            self._api_commit(cursor)
        if stats["found"]:
            log.info(
                "%s: %d mail(s): %d accepted, %d already received, %d refused, %d to retry",
                self.label,
                stats["found"],
                stats["accepted"],
                stats["duplicates"],
                stats["failed"],
                stats["deferred"],
            )
        return stats

    def _one(self, message_id: str, retries: dict[str, list[float]], stats: dict[str, Any]) -> None:
        assert self.policy is not None
        raw = self._api_raw(message_id)
        if raw is None:  # moved or deleted meanwhile
            retries.pop(message_id, None)
            return
        stats["found"] += 1
        limit = self.policy.config.smtp.max_message_size
        if len(raw) > limit:
            reply = f"552 5.3.4 the mail is {len(raw)} bytes; the limit is {limit} bytes"
        else:
            outcome = self.policy.take(
                MailEnvelope(
                    raw=raw,
                    mail_from=header_facts(raw)[0],
                    rcpt_to=[self.settings.intake_address],
                    source="imap",
                    authserv_ids=tuple(i.lower() for i in self.settings.trusted_authserv_id),
                )
            )
            reply = outcome.reply
            if reply.startswith("2"):
                stats["duplicates" if outcome.duplicate else "accepted"] += 1
                if not outcome.duplicate:
                    self._notify(outcome)
        if reply.startswith("4"):
            stats["deferred"] += 1
            self._defer(message_id, retries, f"the hub answered {reply!r}")
            return
        if reply.startswith("5"):
            stats["failed"] += 1
            self._refused(raw, reply)
        try:
            self._api_file(message_id, processed=reply.startswith("2"))
        except MailApiError as exc:
            # Taken: the next try answers "already received" and files it then.
            self._defer(message_id, retries, f"cannot file it: {exc}")
            return
        retries.pop(message_id, None)
        stats["moved"] += 1

    def _retries(self) -> dict[str, list[float]]:
        return dict(self.access.store.get(self.access.namespace, RETRY_KEY) or {})

    def _keep_retries(self, retries: dict[str, list[float]]) -> None:
        if retries or self.access.store.get(self.access.namespace, RETRY_KEY):
            self.access.store.put(self.access.namespace, RETRY_KEY, retries)

    def _defer(self, message_id: str, retries: dict[str, list[float]], reason: str) -> None:
        attempts = int(retries.get(message_id, [0, 0])[0]) + 1
        delay = min(self.settings.retry_backoff * 2 ** (attempts - 1), RETRY_MAX)
        retries[message_id] = [attempts, self._clock() + delay]
        log.info("%s: mail %s left in place (%s)", self.label, message_id, reason)

    def _refused(self, raw: bytes, reply: str) -> None:
        sender, from_addr, message_id, subject = header_facts(raw)
        self.failed.append(FailedMail(utcnow(), 0, message_id, from_addr or sender, subject, reply))
        log.warning(
            "%s: mail %s refused, filing it in %r: %s",
            self.label,
            message_id,
            self.settings.failed_folder,
            reply,
        )

    def _notify(self, outcome: IntakeOutcome) -> None:
        loop, hook = self._loop, self.on_accepted
        if hook is None or loop is None or loop.is_closed():
            return

        def call() -> None:
            try:
                hook(outcome)
            except Exception:
                log.exception("after-intake hook failed (the mail is safely stored)")

        loop.call_soon_threadsafe(call)

    def _record(self, error: str | None = None) -> None:
        self.access.record(f"read {self.settings.folder}", error=error)
