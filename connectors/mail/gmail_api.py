"""A Google Workspace mailbox through the Gmail API, for domains that turned IMAP or SMTP off:
intake (``[[imap]] transport = "gmail"``) and the hub's mail (``[mail_out] transport =
"gmail"``), signed in with the scope gmail.modify.

Folders are labels. Intake lists the label's mails (``users.messages.list``) on the first
pass, then only what was added since (``users.history.list`` from the ``historyId`` kept in
the state store; a too old one means listing again), fetches each one's MIME
(``users.messages.get?format=raw``) and files it with ``users.messages.modify``: the
Processed or Failed label added (created when missing), the read label removed. Mail out is
``users.messages.send`` with ``raw``, or, for the answers folder (``method = "imap"``),
``users.messages.insert`` with ``raw`` and that label.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any
from urllib.parse import quote

from connectors.mail.api_client import MailApi, MailApiError
from connectors.mail.api_sender import ApiMailSender
from connectors.mail.api_source import ApiMailSource
from hub.core.config import Config
from hub.mail.oauth import MailboxAccess

API_NAME = "Gmail API"
HISTORY_KEY = "gmail_history"
ROOT = "/gmail/v1/users/me"
# System labels, named by their ids.
SYSTEM = {"INBOX", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "SENT", "DRAFT"}


def gmail_api(config: Config, access: MailboxAccess, timeout: float = 30.0) -> MailApi:
    return MailApi(access, config.calendar_oauth.google.gmail_url, API_NAME, timeout=timeout)


def label_id(api: MailApi, name: str, *, create: bool) -> str:
    """The id of label NAME (a system label's name is its id); created when missing and
    CREATE, else MailApiError naming it."""
    if name.upper() in SYSTEM:
        return name.upper()
    for label in api.request("GET", f"{ROOT}/labels").json().get("labels", []):
        if label.get("name") == name:
            return str(label["id"])
    if not create:
        raise MailApiError(f"the mailbox has no label {name!r}: create it, or fix the name")
    made = api.request(
        "POST",
        f"{ROOT}/labels",
        json={"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"},
    ).json()
    return str(made["id"])


def _raw(message: EmailMessage) -> str:
    return base64.urlsafe_b64encode(message.as_bytes(policy=SMTP_POLICY)).decode()


class GmailSource(ApiMailSource):
    api_name = API_NAME

    def _make_api(self) -> MailApi:
        return gmail_api(self.access.config, self.access, self.settings.timeout)

    def _api_prepare(self) -> None:
        s = self.settings
        self._label = label_id(self.api, s.folder, create=False)
        self._processed = label_id(self.api, s.processed_folder, create=True)
        self._failed = label_id(self.api, s.failed_folder, create=True)

    def _api_changes(self) -> tuple[list[str], Any]:
        ns = self.access.namespace
        kept = self.access.store.get(ns, HISTORY_KEY) or {}
        start = kept.get("history") if kept.get("label") == self.settings.folder else None
        if start:
            ids: list[str] = []
            params: dict[str, Any] = {
                "startHistoryId": start,
                "labelId": self._label,
                "historyTypes": "messageAdded",
            }
            try:
                while True:
                    page = self.api.request("GET", f"{ROOT}/history", params=params).json()
                    for record in page.get("history", []):
                        for added in record.get("messagesAdded", []):
                            ids.append(str(added["message"]["id"]))
                    if not page.get("nextPageToken"):
                        return list(dict.fromkeys(ids)), str(page.get("historyId") or start)
                    params["pageToken"] = page["nextPageToken"]
            except MailApiError as exc:
                if exc.status != 404:
                    raise
                # The history id is too old: list the label afresh (seen mails answer
                # "already received").
        # Noted before listing, so nothing added meanwhile is skipped next time.
        history = str(self.api.request("GET", f"{ROOT}/profile").json()["historyId"])
        ids = []
        params = {"labelIds": self._label, "maxResults": 500}
        while True:
            page = self.api.request("GET", f"{ROOT}/messages", params=params).json()
            ids.extend(str(m["id"]) for m in page.get("messages", []))
            if not page.get("nextPageToken"):
                return ids, history
            params["pageToken"] = page["nextPageToken"]

    def _api_commit(self, cursor: Any) -> None:
        if cursor:
            self.access.store.put(
                self.access.namespace,
                HISTORY_KEY,
                {"label": self.settings.folder, "history": cursor},
            )

    def _api_raw(self, message_id: str) -> bytes | None:
        try:
            found = self.api.request(
                "GET", f"{ROOT}/messages/{quote(message_id)}", params={"format": "raw"}
            ).json()
        except MailApiError as exc:
            if exc.status == 404:
                return None
            raise
        if self._label not in found.get("labelIds", []):
            return None  # filed meanwhile
        raw = str(found.get("raw", ""))
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))

    def _api_file(self, message_id: str, processed: bool) -> None:
        self.api.request(
            "POST",
            f"{ROOT}/messages/{quote(message_id)}/modify",
            json={
                "addLabelIds": [self._processed if processed else self._failed],
                "removeLabelIds": [self._label],
            },
        )

    def _api_count(self) -> str:
        info = self.api.request("GET", f"{ROOT}/labels/{quote(self._label)}").json()
        return f"{info.get('messagesTotal', 0)} mail(s), {info.get('messagesUnread', 0)} unread"


class GmailSender(ApiMailSender):
    """``[mail_out] transport = "gmail"``: messages.send (method "smtp") or messages.insert
    with the imap_folder label (method "imap"); blocking HTTP in a worker thread."""

    transport = "gmail"

    def _api_client(self, access: MailboxAccess) -> MailApi:
        return gmail_api(access.config, access)

    def _api_folder(self, name: str) -> str:
        return label_id(self.api, name, create=True)

    def _api_store(self, message: EmailMessage, folder: str) -> None:
        self.api.request(
            "POST",
            f"{ROOT}/messages",
            params={"internalDateSource": "dateHeader"},
            json={"raw": _raw(message), "labelIds": [folder, "UNREAD"]},
        )

    def _api_send(self, message: EmailMessage) -> None:
        self.api.request("POST", f"{ROOT}/messages/send", json={"raw": _raw(message)})
