"""IMAP mailbox intake: mail left in a mailbox becomes SMS, like mail sent to the SMTP door.

For organisations that would rather point a mailbox at the hub than run an SMTP listener.
Each pass: SELECT the folder, UID SEARCH its messages, FETCH them (``BODY.PEEK[]``, so a
human reading the same mailbox still sees them unread) in batches, hand each to
:meth:`IntakePolicy.take` as if it had been sent to the configured intake address, then:

- 2xx (queued, or already received): MOVE it to the ``Processed`` folder;
- 5xx (refused for good): MOVE it to the ``Failed`` folder, log the reason and keep a short
  record of it (:attr:`ImapSource.failed`);
- 4xx (try later): leave it where it is and retry it after a growing delay.

Nothing lost, nothing twice: a mail is moved only after ``take()`` returned, i.e. after the
mail and its SMS were committed. If the process dies in between, the next pass sees the mail
again, ``take()`` answers "already received" (same Message-ID) and it is moved then.

UIDs are only meaningful with the folder's UIDVALIDITY: the pass notes it at every SELECT,
and when it changes (the folder was deleted and recreated, or renumbered) everything cached
about UIDs (retry delays) is dropped before anything is done, so a UID from an old
UIDVALIDITY is never acted on.

Between passes the source waits in IDLE (RFC 2177, renewed every 25 minutes) or, if the
server lacks IDLE or refuses it, polls every ``poll_interval`` seconds. A lost connection is
reopened with exponential backoff (1 s doubling to 5 minutes), each attempt logged in plain
words and without the password.

imapclient blocks, so all IMAP work (and the blocking ``take()``) runs in one worker thread
per source: one connection is never used by two threads, and the event loop never waits on
the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Literal

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import (
    CapabilityError,
    IMAPClientAbortError,
    IMAPClientError,
    LoginError,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.mail.message_facts import FailedMail, header_facts
from connectors.mail.oauth_login import imap_login
from hub.core.config import SEE_EXAMPLE, config_error
from hub.core.timeutil import utcnow
from hub.errors import ConnectorError, ConsentRevoked, InvalidInput, MailboxAuthError
from hub.mail.intake.addresses import split_address
from hub.mail.intake.policy import IntakeOutcome, IntakePolicy, MailEnvelope
from hub.mail.oauth import MailboxAccess

log = logging.getLogger("smshub.imap")

#: RFC 2177: servers may end an IDLE after 30 minutes, so clients re-issue it before that.
IDLE_RENEW_SECONDS = 25 * 60.0
#: Reconnect delays: the first one, doubled after each failure, up to the cap.
RECONNECT_INITIAL = 1.0
RECONNECT_MAX = 300.0
#: Longest wait before a mail answered 4xx is tried again.
RETRY_MAX = 3600.0
#: How many refused mails :attr:`ImapSource.failed` remembers.
FAILED_RECORDS = 100


class ImapSourceSettings(BaseModel):
    """One ``[[imap]]`` entry: a mailbox whose mail becomes SMS."""

    model_config = ConfigDict(extra="forbid")

    # A short name for logs and status; default username@host/folder.
    name: str = ""
    # "imap", or the provider's mail API for tenants that turned IMAP off: "graph"
    # (Microsoft 365, with oauth_provider = "microsoft") or "gmail" (Google, "google"); both
    # need auth = "xoauth2" and no host. Folders are Graph folder names or Gmail labels.
    transport: Literal["imap", "graph", "gmail"] = "imap"
    host: str = ""
    # Default: 993 with security = "tls", 143 otherwise.
    port: int | None = Field(None, ge=1, le=65535)
    # "tls" (implicit TLS, IMAPS), "starttls", or "plain" (tests, or a trusted local socket).
    security: Literal["tls", "starttls", "plain"] = "tls"
    username: str
    # "password" (LOGIN), or "xoauth2": SASL XOAUTH2 / OAUTHBEARER with the token of a
    # Microsoft 365 or Google sign-in (connect the mailbox in the console's Mailboxes page or
    # with `smshub mailboxes auth`; the tokens are kept encrypted in the database).
    auth: Literal["password", "xoauth2"] = "password"
    oauth_provider: Literal["microsoft", "google"] | None = None
    # The mailbox password: an environment variable or a file holding it.
    password_env: str | None = None
    password_file: str | None = None
    # The folder to read, and where handled mail goes (created when missing).
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    failed_folder: str = "Failed"
    # Mail found here is taken as if it had been sent to this intake address.
    intake_address: str
    # The authserv-id(s) of this mailbox's mail server: its topmost Authentication-Results
    # vouch for allowed senders (it is the relay here). Empty: the hub checks DKIM itself.
    trusted_authserv_id: list[str] = []

    # Wait for new mail with IDLE; without it (or if the server refuses it) poll.
    idle: bool = True
    poll_interval: float = Field(60.0, gt=0)
    # Messages fetched per FETCH.
    batch_size: int = Field(50, ge=1, le=1000)
    # Check the server's certificate (against ca_file if given, else the system CAs).
    verify_certificate: bool = True
    ca_file: str = ""
    # Seconds to wait for the server to connect or answer a command.
    timeout: float = Field(30.0, gt=0)
    # First delay before a mail answered 4xx is tried again (doubles, up to an hour).
    retry_backoff: float = Field(60.0, gt=0)

    @field_validator("trusted_authserv_id", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("intake_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            split_address(value)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        return value.strip().strip("<>")

    @model_validator(mode="after")
    def _consistent(self) -> ImapSourceSettings:
        api_provider = {"graph": "microsoft", "gmail": "google"}.get(self.transport)
        if api_provider is not None:
            if self.auth != "xoauth2" or self.oauth_provider != api_provider:
                raise ValueError(
                    f'transport = "{self.transport}" signs in by OAuth: set auth = "xoauth2" '
                    f'and oauth_provider = "{api_provider}"'
                )
        elif not self.host:
            raise ValueError('set host (the IMAP server), or transport = "graph" / "gmail"')
        if self.auth == "xoauth2":
            if self.oauth_provider is None:
                raise ValueError('auth = "xoauth2" needs oauth_provider = "microsoft" or "google"')
        elif not (self.password_env or self.password_file):
            raise ValueError("set password_env or password_file (the mailbox password)")
        if self.folder in (self.processed_folder, self.failed_folder):
            raise ValueError(
                "processed_folder and failed_folder must differ from folder, "
                "or handled mail would be read again"
            )
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.security == "tls" else 143)

    @property
    def label(self) -> str:
        return self.name or f"{self.username}@{self.host or self.transport}/{self.folder}"

    @classmethod
    def from_config(cls, data: dict[str, Any], where: str = "imap") -> ImapSourceSettings:
        """Validate one ``[[imap]]`` table; raise ConfigError naming each bad key."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(
                exc,
                name=lambda key: f"{where}.{key}" if key else where,
                hint=SEE_EXAMPLE,
                strip_value_error=True,
            ) from None


def make_ssl_context(settings: ImapSourceSettings) -> ssl.SSLContext:
    """The TLS context for implicit TLS or STARTTLS, as the settings ask."""
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ImapUnavailable(ConnectorError):
    """The mailbox could not be reached or used; the message says why in plain words."""


class _ConnectionLost(Exception):
    """The server said BYE (shutdown, kick, idle timeout)."""


# Everything that means "this connection is unusable now": reconnect, with backoff.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    IMAPClientError,
    _ConnectionLost,
    MailboxAuthError,
)


def _text(exc: BaseException) -> str:
    """An exception's message without imaplib's b'...' wrapping."""
    text = str(exc)
    for prefix in ("b'", 'b"'):
        if text.startswith(prefix) and text.endswith(prefix[1]):
            text = text[2:-1]
    return text or type(exc).__name__


def describe(exc: BaseException, settings: ImapSourceSettings) -> str:
    """What went wrong, for a sysadmin (never includes the password)."""
    where = f"{settings.host}:{settings.effective_port}"
    if isinstance(exc, MailboxAuthError):
        return str(exc)
    if isinstance(exc, LoginError) and settings.auth == "xoauth2":
        return (
            f"{where} refused the OAuth token of {settings.username!r} even after a refresh: "
            f"{_text(exc)} (check that the account may use IMAP and that the mailbox "
            "signed in is this username)"
        )
    if isinstance(exc, LoginError):
        source = (
            f"environment variable {settings.password_env}"
            if settings.password_env
            else f"file {settings.password_file}"
        )
        return (
            f"{where} refused the login of {settings.username!r}: {_text(exc)} "
            f"(check the username and the password in the {source})"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the TLS certificate of {where} was not accepted ({exc.verify_message}); "
            "name its CA with ca_file, or set verify_certificate = false on a trusted "
            "network only"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    if isinstance(exc, CapabilityError):
        return f"{where} lacks a needed capability: {_text(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return (
            f"cannot connect to {where}: connection refused "
            "(is the IMAP server up, is the port right?)"
        )
    if isinstance(exc, socket.gaierror):
        return f"cannot find the host {settings.host!r}: {exc.strerror}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {settings.timeout:g} s"
    if isinstance(exc, IMAPClientAbortError | _ConnectionLost):
        return f"the connection to {where} was closed: {_text(exc)}"
    if isinstance(exc, OSError):
        return f"network error with {where}: {exc.strerror or _text(exc)}"
    if isinstance(exc, IMAPClientError):
        return f"{where} answered with an error: {_text(exc)}"
    return f"unexpected error with {where}: {exc!r}"


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.3g} s"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Retry:
    """A mail answered 4xx (or that could not be moved): when to look at it again."""

    attempts: int
    due: float
    reason: str


class ImapSource:
    """Reads one mailbox folder and hands each mail to the intake policy.

    ``start()`` runs the background loop (IDLE or polling, reconnecting on errors);
    ``run_once()`` does a single pass and returns its counts (for tests and one-shot
    commands; not while the loop runs). ``on_accepted(outcome)`` is called in the event loop
    for each newly accepted mail (e.g. to wake the dispatcher).
    """

    #: What the registry validates an ``[[imap]]`` table with (as for SMS providers).
    settings_model = ImapSourceSettings
    # Class attributes rather than settings: tests shorten them, sysadmins need not.
    idle_renew_seconds = IDLE_RENEW_SECONDS
    reconnect_initial = RECONNECT_INITIAL
    reconnect_max = RECONNECT_MAX

    def __init__(
        self,
        settings: ImapSourceSettings,
        policy: IntakePolicy,
        password: str,
        *,
        on_accepted: Callable[[IntakeOutcome], Any] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        access: MailboxAccess | None = None,
    ) -> None:
        self.settings = settings
        # The mailbox's sign-in (auth = "xoauth2") and where its activity is noted.
        self.access = access
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
        self._password = password
        self._ssl_context = ssl_context
        self._clock = clock
        self._client: IMAPClient | None = None
        self._capabilities: frozenset[bytes] = frozenset()
        self._uidvalidity: int | None = None
        self._retries: dict[tuple[int, int], _Retry] = {}
        self._use_idle = settings.idle
        # One thread owns the connection; the loop only awaits what it does.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smshub-imap")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Future[None] | None = None
        self._stopping = threading.Event()
        self._closed = False
        # A pipe the worker thread waits on next to the IMAP socket, so stop() and wake()
        # interrupt IDLE and sleeps at once.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # ------------------------------------------------------------------ asyncio side

    async def start(self) -> None:
        """Run the background loop (in the source's worker thread) until stop()."""
        if self._closed:
            raise RuntimeError(f"IMAP source {self.label} was stopped; make a new one")
        if self._task is not None:
            return
        if self.settings.security == "plain" and not _is_loopback(self.settings.host):
            log.warning(
                '%s: security = "plain": the password and the mail cross the network '
                'unencrypted; use "tls" or "starttls"',
                self.label,
            )
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._task = self._loop.run_in_executor(self._executor, self._serve)
        log.info(
            "%s: reading mail for %s (%s)",
            self.label,
            self.settings.intake_address,
            "IDLE" if self.settings.idle else f"every {_seconds(self.settings.poll_interval)}",
        )

    async def stop(self) -> None:
        """Stop the loop, log out and release the thread; idempotent."""
        if self._closed:
            return
        self._stopping.set()
        self.wake()
        loop = asyncio.get_running_loop()
        if self._task is not None:
            try:
                # The thread may be inside a command waiting up to `timeout` for the server.
                await asyncio.wait_for(asyncio.shield(self._task), self.settings.timeout + 5)
            except TimeoutError:
                log.warning("%s: did not stop in time; closing its connection", self.label)
                self._force_close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._task, 10)
            except Exception:
                log.exception("%s: the IMAP loop ended with an error", self.label)
            self._task = None
        else:
            await loop.run_in_executor(self._executor, self._disconnect, True)
        self._closed = True
        self._executor.shutdown(wait=False)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.state = "stopped"

    async def run_once(self) -> dict[str, Any]:
        """One pass (connect if needed, fetch, take, move); raises ImapUnavailable."""
        if self._task is not None:
            raise RuntimeError("the background loop is running; call wake() instead")
        if self._closed:
            raise RuntimeError(f"IMAP source {self.label} was stopped")
        self._loop = asyncio.get_running_loop()
        return await self._loop.run_in_executor(self._executor, self._run_once_sync)

    def wake(self) -> None:
        """Make the loop look at the mailbox now (thread-safe)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def status(self) -> dict[str, Any]:
        """What the source is doing, for status pages and the CLI."""
        return {
            "name": self.label,
            "state": self.state,
            "last_error": self.last_error,
            "last_pass": self.last_pass,
            "waiting_retry": len(self._retries),
            "failed": [asdict(f) for f in list(self.failed)[-10:]],
        }

    # ------------------------------------------------------------------ worker thread

    def _run_once_sync(self) -> dict[str, Any]:
        try:
            self._connect()
            return self._pass()
        except _CONNECTION_ERRORS as exc:
            message = describe(exc, self.settings)
            self.last_error = message
            self._record(error=message)
            self._disconnect(logout=False)
            raise ImapUnavailable(f"{self.label}: {message}") from exc

    def _serve(self) -> None:
        """The background loop: pass, wait for news, repeat; reconnect with backoff."""
        delay = self.reconnect_initial
        failures = 0
        while not self._stopping.is_set():
            try:
                self._connect()
                if failures:
                    log.warning(
                        "%s: connected again after %d failed attempt(s)", self.label, failures
                    )
                    failures = 0
                self._pass()
                # Only a whole pass proves the mailbox usable (a missing folder fails after
                # a good login): reset the backoff here, not at login.
                delay = self.reconnect_initial
                self.last_error = None
                if self._stopping.is_set():
                    break
                self._wait_for_news()
                continue
            except _CONNECTION_ERRORS as exc:
                if self._stopping.is_set():
                    break
                message = describe(exc, self.settings)
                # Wrong password or certificate: a human must act; the rest may heal itself.
                level = (
                    logging.ERROR
                    if isinstance(exc, LoginError | ssl.SSLCertVerificationError | ConsentRevoked)
                    else logging.WARNING
                )
            except Exception as exc:
                if self._stopping.is_set():
                    break
                log.exception("%s: unexpected error in the IMAP loop", self.label)
                message, level = f"unexpected error: {exc!r}", logging.ERROR
            self._disconnect(logout=False)
            failures += 1
            self.last_error = message
            self._record(error=message)
            self.state = "backoff"
            log.log(level, "%s: %s; trying again in %s", self.label, message, _seconds(delay))
            self._sleep(delay)
            delay = min(delay * 2, self.reconnect_max)
        self._disconnect(logout=True)
        self.state = "stopped"

    def _connect(self) -> IMAPClient:
        """The open connection, or a new one: connect, TLS, login, folders."""
        if self._client is not None:
            return self._client
        s = self.settings
        self.state = "connecting"
        client = self._open()
        try:
            capabilities = frozenset(c.upper() for c in client.capabilities())
            self._ensure_folders(client)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        self._client = client
        self._capabilities = capabilities
        log.info(
            "%s: logged in to %s:%d (%s; IDLE %s, MOVE %s)",
            self.label,
            s.host,
            s.effective_port,
            s.security,
            "yes" if b"IDLE" in capabilities else "no",
            "yes" if b"MOVE" in capabilities else "no",
        )
        return client

    def _open(self) -> IMAPClient:
        """A new connection, logged in (TLS as the settings ask)."""
        s = self.settings
        context = None
        if s.security != "plain":
            context = self._ssl_context or make_ssl_context(s)
        client = IMAPClient(
            s.host,
            s.effective_port,
            ssl=s.security == "tls",
            ssl_context=context if s.security == "tls" else None,
            timeout=s.timeout,
        )
        try:
            if s.security == "starttls":
                client.starttls(context)
            imap_login(client, s.username, self._password, self.access)
        except BaseException:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise
        return client

    def discard(self) -> None:
        """Release what a source never started holds (its thread pool and wake pipe)."""
        if self._task is not None or self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def check(self) -> str:
        """Sign in and read the folder's counts, changing nothing (the console's and the
        CLI's "test"; blocking). ImapUnavailable saying what went wrong."""
        s = self.settings
        try:
            client = self._open()
            try:
                status = client.folder_status(s.folder, [b"MESSAGES", b"UNSEEN"])
            finally:
                with contextlib.suppress(Exception):
                    client.logout()
        except _CONNECTION_ERRORS as exc:
            message = describe(exc, s)
            self._record(error=message)
            raise ImapUnavailable(f"{self.label}: {message}") from exc
        self._record()
        return (
            f"signed in to {s.host} as {s.username} and read {s.folder!r}: "
            f"{status.get(b'MESSAGES', 0)} mail(s), {status.get(b'UNSEEN', 0)} unread"
        )

    def _ensure_folders(self, client: IMAPClient) -> None:
        for name in (self.settings.processed_folder, self.settings.failed_folder):
            if client.folder_exists(name):
                continue
            try:
                client.create_folder(name)
            except IMAPClientAbortError:
                raise
            except IMAPClientError:
                # Another client may have created it meanwhile; anything else is an error.
                if not client.folder_exists(name):
                    raise
            else:
                log.info("%s: created folder %r", self.label, name)
            # Subscribed so that mail clients show it; not every server cares.
            with contextlib.suppress(IMAPClientError):
                client.subscribe_folder(name)

    def _disconnect(self, logout: bool) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if logout:
                client.logout()
            else:
                client.shutdown()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _force_close(self) -> None:
        """Unblock a worker stuck on the socket (from another thread)."""
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                client.socket().shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ one pass

    def _pass(self) -> dict[str, Any]:
        client = self._connect()
        s = self.settings
        self.state = "processing"
        try:
            info = client.select_folder(s.folder)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            raise IMAPClientError(f"cannot open folder {s.folder!r}: {_text(exc)}") from exc
        validity = int(info[b"UIDVALIDITY"])
        stats: dict[str, Any] = {
            "folder": s.folder,
            "uidvalidity": validity,
            "uidvalidity_changed": False,
            "found": 0,
            "waiting": 0,
            "accepted": 0,
            "duplicates": 0,
            "failed": 0,
            "deferred": 0,
            "moved": 0,
        }
        if validity != self._uidvalidity:
            if self._uidvalidity is not None:
                log.warning(
                    "%s: folder %r was recreated or renumbered (UIDVALIDITY %d, was %d): "
                    "forgetting what was known about its messages and reading it again",
                    self.label,
                    s.folder,
                    validity,
                    self._uidvalidity,
                )
                stats["uidvalidity_changed"] = True
            self._retries.clear()
            self._uidvalidity = validity
        # Everything still in the folder: handled mail is moved out, so ALL is the to-do
        # list (UNSEEN would skip mail a human opened). \Deleted ones are on their way out.
        uids = sorted(client.search(["NOT", "DELETED"]))
        stats["found"] = len(uids)
        present = set(uids)
        self._retries = {
            key: retry
            for key, retry in self._retries.items()
            if key[0] == validity and key[1] in present
        }
        now = self._clock()
        due = [
            uid
            for uid in uids
            if (retry := self._retries.get((validity, uid))) is None or retry.due <= now
        ]
        stats["waiting"] = len(uids) - len(due)
        for start in range(0, len(due), s.batch_size):
            if self._stopping.is_set():
                break
            self._batch(client, validity, due[start : start + s.batch_size], stats)
        self.last_pass = stats
        self._record()
        if stats["found"]:
            log.info(
                "%s: %d mail(s): %d accepted, %d already received, %d refused, "
                "%d to retry, %d waiting",
                self.label,
                stats["found"],
                stats["accepted"],
                stats["duplicates"],
                stats["failed"],
                stats["deferred"],
                stats["waiting"],
            )
        return stats

    def _batch(
        self, client: IMAPClient, validity: int, uids: list[int], stats: dict[str, Any]
    ) -> None:
        limit = self.policy.config.smtp.max_message_size
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        # A UID missing from an answer was expunged meanwhile (someone else moved it).
        wanted = [u for u in uids if u in sizes and sizes[u].get(b"RFC822.SIZE", 0) <= limit]
        too_big = [u for u in uids if u in sizes and u not in wanted]
        processed: list[int] = []
        failed: list[int] = []
        if too_big:
            # Same rule as the SMTP door's 552, without downloading the whole mail.
            headers = client.fetch(too_big, ["BODY.PEEK[HEADER]"])
            for uid in too_big:
                size = sizes[uid].get(b"RFC822.SIZE", 0)
                reply = f"552 5.3.4 the mail is {size} bytes; the limit is {limit} bytes"
                self._refused(uid, headers.get(uid, {}).get(b"BODY[HEADER]", b""), reply)
                failed.append(uid)
        bodies = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
        for uid in wanted:
            raw = bodies.get(uid, {}).get(b"BODY[]")
            if raw is None:
                continue
            sender = header_facts(raw)[0]
            outcome = self.policy.take(
                MailEnvelope(
                    raw=raw,
                    mail_from=sender,
                    rcpt_to=[self.settings.intake_address],
                    source="imap",
                    authserv_ids=tuple(i.lower() for i in self.settings.trusted_authserv_id),
                )
            )
            if outcome.reply.startswith("2"):
                processed.append(uid)
                if outcome.duplicate:
                    stats["duplicates"] += 1
                else:
                    stats["accepted"] += 1
                    self._notify(outcome)
            elif outcome.reply.startswith("5"):
                self._refused(uid, raw, outcome.reply)
                failed.append(uid)
            else:
                stats["deferred"] += 1
                self._defer(validity, uid, f"the hub answered {outcome.reply!r}")
        stats["failed"] += len(failed)
        # Only now, with take() returned for each of them, do they leave the folder.
        self._move(client, validity, processed, self.settings.processed_folder, stats)
        self._move(client, validity, failed, self.settings.failed_folder, stats)

    def _record(self, error: str | None = None) -> None:
        if self.access is not None:
            self.access.record(f"read {self.settings.folder}", error=error)

    def _refused(self, uid: int, raw: bytes, reply: str) -> None:
        sender, from_addr, message_id, subject = header_facts(raw)
        record = FailedMail(utcnow(), uid, message_id, from_addr or sender, subject, reply)
        self.failed.append(record)
        log.warning(
            "%s: mail %s from %s refused, moving it to %r: %s",
            self.label,
            message_id or f"uid {uid}",
            record.sender or "an unknown sender",
            self.settings.failed_folder,
            reply,
        )

    def _defer(self, validity: int, uid: int, reason: str) -> None:
        key = (validity, uid)
        attempts = self._retries[key].attempts + 1 if key in self._retries else 1
        delay = min(self.settings.retry_backoff * 2 ** (attempts - 1), RETRY_MAX)
        self._retries[key] = _Retry(attempts, self._clock() + delay, reason)
        log.info(
            "%s: uid %d left in %r (%s); trying again in %s",
            self.label,
            uid,
            self.settings.folder,
            reason,
            _seconds(delay),
        )

    def _move(
        self,
        client: IMAPClient,
        validity: int,
        uids: Sequence[int],
        folder: str,
        stats: dict[str, Any],
    ) -> None:
        if not uids:
            return
        if validity != self._uidvalidity:  # pragma: no cover (the pass re-selects first)
            return
        try:
            if b"MOVE" in self._capabilities:
                client.move(uids, folder)
            else:
                client.copy(uids, folder)
                client.add_flags(uids, [DELETED])
                if b"UIDPLUS" in self._capabilities:
                    client.uid_expunge(uids)
                else:
                    # Without UIDPLUS, EXPUNGE also removes other \Deleted mail in the folder.
                    client.expunge()
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            # Refused (quota, rights): the mails are taken; the next try answers "already
            # received" and moves them then.
            for uid in uids:
                self._defer(validity, uid, f"cannot move it to {folder!r}: {_text(exc)}")
            return
        stats["moved"] += len(uids)

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

    # ------------------------------------------------------------------ waiting

    def _wait_for_news(self) -> None:
        """Return when the folder may hold new mail, a retry is due, or stop() was called."""
        client = self._client
        if client is None:
            return
        if self._use_idle and b"IDLE" not in self._capabilities:
            log.info(
                "%s: the server does not support IDLE; checking for mail every %s",
                self.label,
                _seconds(self.settings.poll_interval),
            )
            self._use_idle = False
        now = self._clock()
        wait = self.idle_renew_seconds if self._use_idle else self.settings.poll_interval
        deadline = now + wait
        if self._retries:
            deadline = min(deadline, min(r.due for r in self._retries.values()))
        if self._use_idle:
            self._idle_until(client, deadline)
        else:
            self.state = "polling"
            self._sleep(deadline - now)

    def _idle_until(self, client: IMAPClient, deadline: float) -> None:
        try:
            client.idle()
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            log.warning(
                "%s: the server refused IDLE (%s); checking for mail every %s instead",
                self.label,
                _text(exc),
                _seconds(self.settings.poll_interval),
            )
            self._use_idle = False
            # The refused command may leave the session in an unknown state: start afresh.
            self._disconnect(logout=False)
            return
        self.state = "idle"
        sock = client.socket()
        if self._input_waiting(client, sock):
            # News came with the "+ idling" line (mail that arrived since the SEARCH): it is
            # already read into imaplib's buffer, where poll() would never see it.
            client.idle_done()
            return
        while not self._stopping.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            event = self._wait(sock, remaining)
            if event == "wake":
                break
            if event == "timeout":
                continue
            responses = client.idle_check(timeout=0)
            if not responses:
                # Readable but no line: imapclient swallows EOF as "nothing". Leaving IDLE
                # tells a live connection from a dead one.
                break
            if any(r and r[0] == b"BYE" for r in responses):
                bye = next(r for r in responses if r and r[0] == b"BYE")
                raise _ConnectionLost(
                    "the server said BYE: " + " ".join(_text(p) for p in bye[1:]).strip()
                )
            if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                break
        client.idle_done()

    def _input_waiting(self, client: IMAPClient, sock: socket.socket) -> bool:
        """Whether bytes from the server wait in a buffer (imaplib's or TLS's)."""
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        reader = getattr(getattr(client, "_imap", None), "file", None)
        peek = getattr(reader, "peek", None)
        if peek is None:
            return False
        sock.setblocking(False)
        try:
            # Returns what is buffered, else what the socket has right now, else b"".
            return bool(peek(1))
        except OSError:
            return False
        finally:
            sock.settimeout(self.settings.timeout)

    def _wait(
        self, sock: socket.socket | None, timeout: float
    ) -> Literal["imap", "wake", "timeout"]:
        """Block until SOCK is readable, wake() was called, or TIMEOUT seconds passed."""
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return "imap"  # decrypted bytes already buffered: poll() would not see them
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if sock is not None:
            poller.register(sock.fileno(), select.POLLIN)
        events = poller.poll(max(0.0, timeout) * 1000)
        if any(fd == self._wake_r for fd, _ in events):
            with contextlib.suppress(OSError):
                while os.read(self._wake_r, 512):
                    pass
            return "wake"
        return "imap" if events else "timeout"

    def _sleep(self, seconds: float) -> None:
        """Sleep, but return at once on wake() or stop()."""
        if seconds > 0 and not self._stopping.is_set():
            self._wait(None, seconds)
