"""MailSender through an SMTP relay (STARTTLS or implicit TLS, optional AUTH by password or
by an OAuth token: ``[mail_out] auth = "xoauth2"``)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage

from connectors.mail.oauth_login import smtp_login
from hub.core.config import MailOutSection
from hub.errors import PermanentMailError
from hub.mail.oauth import MailboxAccess


class SmtpRelaySender:
    """Sends through ``[mail_out]``; smtplib is blocking, so it runs in a worker thread."""

    def __init__(
        self,
        settings: MailOutSection,
        password: str | None,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        access: MailboxAccess | None = None,
    ) -> None:
        self.settings = settings
        self.access = access
        self.password = password
        self.tls_context = tls_context or ssl.create_default_context()
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        s = self.settings
        client: smtplib.SMTP
        if s.implicit_tls:
            client = smtplib.SMTP_SSL(
                s.host, s.port, timeout=self.timeout, context=self.tls_context
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
        with client:
            client.ehlo()
            if s.starttls and not s.implicit_tls:
                client.starttls(context=self.tls_context)
                client.ehlo()
            if s.username:
                try:
                    smtp_login(client, s.username, self.password or "", self.access)
                except Exception as exc:
                    self._record(error=f"relay {s.host} refused the sign-in of {s.username}: {exc}")
                    raise
            try:
                refused = client.send_message(message)
            except smtplib.SMTPRecipientsRefused as exc:
                raise PermanentMailError(f"relay refused the recipient: {exc.recipients}") from exc
            except smtplib.SMTPResponseException as exc:
                if 500 <= exc.smtp_code < 600:
                    raise PermanentMailError(
                        f"relay answered {exc.smtp_code} {exc.smtp_error!r}"
                    ) from exc
                raise
            if refused:
                raise PermanentMailError(f"relay refused {', '.join(refused)}")
        self._record()

    def _record(self, error: str | None = None) -> None:
        if self.access is not None:
            self.access.record("sent a mail", error=error)
