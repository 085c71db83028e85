"""MailSender that APPENDs mail into a mailbox folder over IMAP (no relay needed).

Useful when replies should land in a shared mailbox's "SMS" folder that the team already
reads; the mail keeps its To header (the reply mailbox chosen for it).
"""

from __future__ import annotations

import asyncio
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from connectors.mail.oauth_login import imap_login
from hub.core.config import MailOutSection
from hub.errors import MailboxAuthError
from hub.mail.oauth import MailboxAccess


class ImapAppendSender:
    """Delivers through ``[mail_out] method = "imap"``; imapclient blocks, so a worker thread."""

    def __init__(
        self,
        settings: MailOutSection,
        password: str | None,
        timeout: float = 30.0,
        access: MailboxAccess | None = None,
    ) -> None:
        self.settings = settings
        # With [mail_out] imap_auth = "xoauth2": the token of the mailbox's sign-in.
        self.access = access
        self.password = password or ""
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._append, message.as_bytes(policy=SMTP_POLICY))

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.imap_ca_file or None)
        return context

    def _append(self, raw: bytes) -> None:
        s = self.settings
        client = IMAPClient(
            s.imap_host,
            port=s.imap_port,
            ssl=s.imap_security == "tls",
            ssl_context=self._context() if s.imap_security == "tls" else None,
            timeout=self.timeout,
        )
        try:
            if s.imap_security == "starttls":
                client.starttls(self._context())
            try:
                imap_login(client, s.imap_username, self.password, self.access)
            except (LoginError, MailboxAuthError) as exc:
                # Retried with backoff: once the password is fixed (or the mailbox connected
                # again), nothing queued is lost.
                message = (
                    f"IMAP server {s.imap_host} refused the login of {s.imap_username!r}: {exc}"
                )
                self._record(error=message)
                raise ConnectionError(message) from exc
            if not client.folder_exists(s.imap_folder):
                client.create_folder(s.imap_folder)
            client.append(s.imap_folder, raw)
            self._record()
        except IMAPClientError as exc:
            self._record(error=f"IMAP APPEND to {s.imap_host} failed: {exc}")
            raise ConnectionError(f"IMAP APPEND to {s.imap_host} failed: {exc}") from exc
        finally:
            try:
                client.logout()
            except Exception:  # the connection may already be gone
                pass

    def _record(self, error: str | None = None) -> None:
        if self.access is not None:
            self.access.record(f"appended a mail to {self.settings.imap_folder}", error=error)
