"""Mailbox intake through a provider's mail API (``[[imap]] transport = "graph"/"gmail"``):
the same job as :mod:`connectors.mail.imap_source`, the same interface, the same answers
(the pass itself is :class:`connectors.mail.source_base.MailboxSource`'s).

Each pass asks the API what is new in the folder since the last pass (Graph delta query,
Gmail history; the cursor kept in the connector state store, so any instance carries on
where another stopped), fetches each mail's MIME, hands it to the intake as if it had been
sent to the intake address, then files it (2xx to ``Processed``, 5xx to ``Failed``); a 4xx
leaves it where it is, tried again after a growing delay (its id kept in the state store
too, since the cursor has already passed it).

The cursor is stored only after every mail it covers was taken and filed. The API is polled
every ``poll_interval`` seconds (``wake()`` for sooner). A failing pass is retried with
backoff, like a lost IMAP link.

Subclasses say how one API lists, fetches and files a mail; HTTP blocks, so passes run in
one worker thread per source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from connectors.mail.api_client import MailApi, MailApiError
from connectors.mail.mailbox_settings import ImapSourceSettings
from connectors.mail.source_base import Fetched, ImapUnavailable, MailboxSource, retry_delay
from hub.core.timeutil import utcnow
from hub.errors import ConfigError, MailboxAuthError
from hub.mail.oauth import MailboxAccess
from hub.ports.mail import MailIntake, OnAccepted

log = logging.getLogger("smshub.mail_api")

RETRY_KEY = "api_retry"  # {message id: [attempts, due (epoch seconds)]}


class ApiMailSource(MailboxSource[str]):
    """Reads one folder through a mail API; subclasses implement the ``_api_*`` methods."""

    log = log
    #: The API's name in messages ("Microsoft Graph", "Gmail API").
    api_name = ""

    def __init__(
        self,
        settings: ImapSourceSettings,
        policy: MailIntake | None,
        password: str = "",
        *,
        on_accepted: OnAccepted | None = None,
        access: MailboxAccess | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if access is None or not access.oauth:
            raise ConfigError(
                f"mailbox {settings.label}: transport = {settings.transport!r} needs the hub's "
                'database and auth = "xoauth2"'
            )
        super().__init__(
            settings,
            policy,
            on_accepted=on_accepted,
            access=access,
            thread_name="smshub-mailapi",
        )
        self.access: MailboxAccess = access
        self._clock = clock or (lambda: utcnow().timestamp())
        self.api = self._make_api()
        self._ready = False
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        # The retries of the pass under way, and its new cursor.
        self._pass_retries: dict[str, list[float]] = {}
        self._cursor: Any = None

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

    def wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

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

    def _begin_pass(self) -> tuple[dict[str, Any], list[str]]:
        self.state = "processing"
        stats = self._counts()
        new, self._cursor = self._api_changes()
        retries = self._pass_retries = self._retries()
        now = self._clock()
        due = [i for i, (_, when) in retries.items() if when <= now]
        stats["waiting"] = len(retries) - len(due)
        return stats, list(dict.fromkeys([*due, *(i for i in new if i not in retries)]))

    def _fetch(self, keys: list[str], stats: dict[str, Any]) -> Iterator[Fetched[str]]:
        for message_id in keys:
            raw = self._api_raw(message_id)
            if raw is None:  # moved or deleted meanwhile
                self._pass_retries.pop(message_id, None)
                continue
            stats["found"] += 1
            yield Fetched(message_id, raw, len(raw))

    def _file(self, keys: list[str], processed: bool, stats: dict[str, Any]) -> None:
        for message_id in keys:
            try:
                self._api_file(message_id, processed=processed)
            except MailApiError as exc:
                # Taken: the next try answers "already received" and files it then.
                self._defer(message_id, f"cannot file it: {exc}")
                continue
            self._pass_retries.pop(message_id, None)
            stats["moved"] += 1

    def _end_pass(self, stats: dict[str, Any]) -> None:
        self._keep_retries(self._pass_retries)
        if not self._stopping:
            self._api_commit(self._cursor)

    def _stopping_now(self) -> bool:
        return self._stopping

    def _waiting_retry(self) -> int:
        return len(self._retries())

    def _retries(self) -> dict[str, list[float]]:
        return dict(self.access.store.get(self.access.namespace, RETRY_KEY) or {})

    def _keep_retries(self, retries: dict[str, list[float]]) -> None:
        if retries or self.access.store.get(self.access.namespace, RETRY_KEY):
            self.access.store.put(self.access.namespace, RETRY_KEY, retries)

    def _defer(self, key: str, reason: str) -> None:
        retries = self._pass_retries
        attempts = int(retries.get(key, [0, 0])[0]) + 1
        retries[key] = [
            attempts,
            self._clock() + retry_delay(self.settings.retry_backoff, attempts),
        ]
        log.info("%s: mail %s left in place (%s)", self.label, key, reason)
