"""IMAP mailbox intake: mail left in a mailbox becomes SMS, like mail sent to the SMTP door.

For organisations that would rather point a mailbox at the hub than run an SMTP listener.
Each pass: SELECT the folder, UID SEARCH its messages, FETCH them (``BODY.PEEK[]``, so a
human reading the same mailbox still sees them unread) in batches, hand each to
 the intake as if it had been sent to the configured intake address, then MOVEs it to
``Processed`` or ``Failed`` by the answer, or leaves it for a retry (the flow of a pass, and
why nothing is lost or taken twice, is :mod:`connectors.mail.source_base`'s).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import (
    CapabilityError,
    IMAPClientAbortError,
    IMAPClientError,
    LoginError,
)

from connectors.mail.mailbox_settings import ImapSourceSettings
from connectors.mail.oauth_login import imap_login
from connectors.mail.source_base import (
    FAILED_RECORDS,
    RECONNECT_INITIAL,
    RECONNECT_MAX,
    RETRY_MAX,
    Fetched,
    ImapUnavailable,
    MailboxSource,
    retry_delay,
)
from hub.mail.oauth import ConsentRevoked, MailboxAccess, MailboxAuthError
from hub.ports.mail import MailIntake, OnAccepted

__all__ = [
    "FAILED_RECORDS",
    "RECONNECT_INITIAL",
    "RECONNECT_MAX",
    "RETRY_MAX",
    "ImapSource",
    "ImapSourceSettings",
    "ImapUnavailable",
]

log = logging.getLogger("smshub.imap")

#: RFC 2177: servers may end an IDLE after 30 minutes, so clients re-issue it before that.
IDLE_RENEW_SECONDS = 25 * 60.0


def make_ssl_context(settings: ImapSourceSettings) -> ssl.SSLContext:
    """The TLS context for implicit TLS or STARTTLS, as the settings ask."""
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    if not settings.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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


class ImapSource(MailboxSource[int]):
    """Reads one mailbox folder over IMAP and hands each mail to the intake.

    ``start()`` runs the background loop (IDLE or polling, reconnecting on errors);
    ``run_once()`` does a single pass and returns its counts (for tests and one-shot
    commands; not while the loop runs). ``on_accepted(outcome)`` is called in the event loop
    for each newly accepted mail (e.g. to wake the dispatcher).
    """

    idle_renew_seconds = IDLE_RENEW_SECONDS
    log = log
    kind = "IMAP source"
    filing = "moving it to"
    summary_waiting = True

    def __init__(
        self,
        settings: ImapSourceSettings,
        policy: MailIntake | None,
        password: str,
        *,
        on_accepted: OnAccepted | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        access: MailboxAccess | None = None,
    ) -> None:
        super().__init__(
            settings, policy, on_accepted=on_accepted, access=access, thread_name="smshub-imap"
        )
        self.batch_size = settings.batch_size
        self._password = password
        self._ssl_context = ssl_context
        self._clock = clock
        self._client: IMAPClient | None = None
        self._capabilities: frozenset[bytes] = frozenset()
        self._uidvalidity: int | None = None
        self._retries: dict[tuple[int, int], _Retry] = {}
        self._use_idle = settings.idle
        self._stopping = threading.Event()
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

    def wake(self) -> None:
        """Make the loop look at the mailbox now (thread-safe)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

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

    def _begin_pass(self) -> tuple[dict[str, Any], list[int]]:
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
        stats = self._counts(uidvalidity=validity, uidvalidity_changed=False)
        if validity != self._uidvalidity:
            stats["uidvalidity_changed"] = self._renumbered(validity)
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
        return stats, due

    def _renumbered(self, validity: int) -> bool:
        """Forget what was known about the folder's UIDs; whether it had been read before."""
        changed = self._uidvalidity is not None
        if changed:
            log.warning(
                "%s: folder %r was recreated or renumbered (UIDVALIDITY %d, was %d): "
                "forgetting what was known about its messages and reading it again",
                self.label,
                self.settings.folder,
                validity,
                self._uidvalidity,
            )
        self._retries.clear()
        self._uidvalidity = validity
        return changed

    def _fetch(self, keys: list[int], stats: dict[str, Any]) -> Iterator[Fetched[int]]:
        client = self._connect()
        assert self.policy is not None
        limit = self.policy.max_message_size
        sizes = client.fetch(keys, ["RFC822.SIZE"])
        # A UID missing from an answer was expunged meanwhile (someone else moved it).
        size = {u: sizes[u].get(b"RFC822.SIZE", 0) for u in keys if u in sizes}
        wanted = [u for u, n in size.items() if n <= limit]
        too_big = [u for u, n in size.items() if n > limit]
        if too_big:
            # Same rule as the SMTP door's 552, without downloading the whole mail.
            headers = client.fetch(too_big, ["BODY.PEEK[HEADER]"])
            for uid in too_big:
                yield Fetched(uid, headers.get(uid, {}).get(b"BODY[HEADER]", b""), size[uid])
        bodies = client.fetch(wanted, ["BODY.PEEK[]"]) if wanted else {}
        for uid in wanted:
            raw = bodies.get(uid, {}).get(b"BODY[]")
            if raw is not None:
                yield Fetched(uid, raw, size[uid])

    def _file(self, keys: list[int], processed: bool, stats: dict[str, Any]) -> None:
        folder = self.settings.processed_folder if processed else self.settings.failed_folder
        self._move(self._connect(), keys, folder, stats)

    def _end_pass(self, stats: dict[str, Any]) -> None:
        self.last_pass = stats
        self._record()

    def _stopping_now(self) -> bool:
        return self._stopping.is_set()

    def _waiting_retry(self) -> int:
        return len(self._retries)

    def _defer(self, key: int, reason: str) -> None:
        assert self._uidvalidity is not None
        index = (self._uidvalidity, key)
        attempts = self._retries[index].attempts + 1 if index in self._retries else 1
        delay = retry_delay(self.settings.retry_backoff, attempts)
        self._retries[index] = _Retry(attempts, self._clock() + delay, reason)
        log.info(
            "%s: uid %d left in %r (%s); trying again in %s",
            self.label,
            key,
            self.settings.folder,
            reason,
            _seconds(delay),
        )

    def _move(
        self, client: IMAPClient, uids: Sequence[int], folder: str, stats: dict[str, Any]
    ) -> None:
        if not uids:
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
                self._defer(uid, f"cannot move it to {folder!r}: {_text(exc)}")
            return
        stats["moved"] += len(uids)

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
