"""What the mail-API senders (Graph, Gmail) share: the ``[mail_out]`` checks, the blocking
HTTP in a worker thread, the store-or-send choice of ``method`` and how an API refusal
becomes a permanent or a retried failure. Each transport supplies the three API calls."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

from connectors.mail.api_client import MailApi, MailApiError
from hub.core.config import MailOutSection
from hub.errors import ConfigError, PermanentMailError
from hub.mail.oauth import MailboxAccess

#: API answers that a retry of the same mail cannot fix (bad mail, no right, too big).
PERMANENT_STATUSES = (400, 403, 413)


class ApiMailSender:
    """``[mail_out]`` through a mail API; subclasses implement the ``_api_*`` methods."""

    #: The ``transport`` name, for the error naming what is missing.
    transport = ""

    def __init__(
        self, settings: MailOutSection, password: str | None, access: MailboxAccess | None = None
    ) -> None:
        if access is None or not access.oauth:
            raise ConfigError(
                f"'mail_out': transport = \"{self.transport}\" needs the hub's database"
            )
        self.settings = settings
        self.access = access
        self.api = self._api_client(access)
        # The answers folder's id, looked up (or created) on the first stored mail.
        self._folder: str | None = None

    def _api_client(self, access: MailboxAccess) -> MailApi:
        raise NotImplementedError

    def _api_folder(self, name: str) -> str:
        """The id of the folder NAME, created when missing."""
        raise NotImplementedError

    def _api_store(self, message: EmailMessage, folder: str) -> None:
        raise NotImplementedError

    def _api_send(self, message: EmailMessage) -> None:
        raise NotImplementedError

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        store = self.settings.method == "imap"
        try:
            if store:
                if self._folder is None:
                    self._folder = self._api_folder(self.settings.imap_folder)
                self._api_store(message, self._folder)
            else:
                self._api_send(message)
        except MailApiError as exc:
            self.access.record("sent a mail", error=str(exc))
            if exc.status in PERMANENT_STATUSES:
                raise PermanentMailError(str(exc)) from exc
            raise
        self.access.record(f"put a mail in {self.settings.imap_folder}" if store else "sent a mail")
