"""A Microsoft 365 mailbox through Microsoft Graph, for tenants that turned IMAP or SMTP AUTH
off: intake (``[[imap]] transport = "graph"``) and the hub's mail (``[mail_out] transport =
"graph"``), signed in with the delegated permissions Mail.ReadWrite and Mail.Send.

Intake reads the folder with a delta query (``/me/mailFolders/{id}/messages/delta``,
following ``@odata.nextLink`` pages to the ``@odata.deltaLink`` kept in the state store),
fetches each mail's MIME (``/me/messages/{id}/$value``) and moves it with
``/me/messages/{id}/move`` to the Processed or Failed folder (created when missing). Mail out
is ``/me/sendMail`` with the MIME in base64, or, for the answers folder (``method =
"imap"``), a message created in that folder from the MIME.
"""

from __future__ import annotations

import base64
import ssl
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import Any
from urllib.parse import quote

from connectors.mail.api_client import MailApi, MailApiError
from connectors.mail.api_sender import ApiMailSender
from connectors.mail.api_source import ApiMailSource
from hub.core.config import Config
from hub.mail.oauth import MailboxAccess

API_NAME = "Microsoft Graph"
DELTA_KEY = "graph_delta"
# Folder names Graph knows without a lookup (well-known folder names).
WELL_KNOWN = {"inbox", "drafts", "sentitems", "deleteditems", "junkemail", "archive"}


def graph_api(config: Config, access: MailboxAccess, timeout: float = 30.0) -> MailApi:
    sec = config.calendar_oauth.microsoft
    verify: ssl.SSLContext | bool = True
    if sec.ca_file:
        verify = ssl.create_default_context(cafile=sec.ca_file)
    return MailApi(access, sec.graph_url, API_NAME, verify=verify, timeout=timeout)


def folder_id(api: MailApi, name: str, *, create: bool) -> str:
    """The id of the top-level mail folder NAME (a well-known name as is); created when
    missing and CREATE, else MailApiError naming it."""
    if name.lower() in WELL_KNOWN:
        return name.lower()
    escaped = name.replace("'", "''")
    found = api.request(
        "GET", "/me/mailFolders", params={"$filter": f"displayName eq '{escaped}'"}
    ).json()
    for folder in found.get("value", []):
        if folder.get("displayName") == name:
            return str(folder["id"])
    if not create:
        raise MailApiError(f"the mailbox has no folder {name!r}: create it, or fix the name")
    made = api.request("POST", "/me/mailFolders", json={"displayName": name}).json()
    return str(made["id"])


class GraphMailSource(ApiMailSource):
    api_name = API_NAME

    def _make_api(self) -> MailApi:
        return graph_api(self.access.config, self.access, self.settings.timeout)

    def _api_prepare(self) -> None:
        s = self.settings
        self._folder = folder_id(self.api, s.folder, create=False)
        # A well-known name's real id, which a message's parentFolderId names.
        self._folder_id = str(
            self.api.request("GET", f"/me/mailFolders/{quote(self._folder)}").json()["id"]
        )
        self._processed = folder_id(self.api, s.processed_folder, create=True)
        self._failed = folder_id(self.api, s.failed_folder, create=True)

    def _api_changes(self) -> tuple[list[str], Any]:
        ns = self.access.namespace
        kept = self.access.store.get(ns, DELTA_KEY) or {}
        link = kept.get("link") if kept.get("folder") == self.settings.folder else None
        ids: list[str] = []
        url: str | None = link
        while True:
            if url is None:
                page = self.api.request(
                    "GET",
                    f"/me/mailFolders/{quote(self._folder)}/messages/delta",
                    params={"$select": "id"},
                ).json()
            else:
                try:
                    page = self.api.request("GET", "", url=url).json()
                except MailApiError as exc:
                    if exc.status not in (400, 404, 410) or url != link:
                        raise
                    # The delta token expired (SyncStateNotFound): read the folder afresh;
                    # mails seen before answer "already received".
                    url, link = None, None
                    continue
            ids.extend(
                str(m["id"]) for m in page.get("value", []) if "@removed" not in m and "id" in m
            )
            if page.get("@odata.nextLink"):
                url = str(page["@odata.nextLink"])
                continue
            return list(dict.fromkeys(ids)), page.get("@odata.deltaLink")

    def _api_commit(self, cursor: Any) -> None:
        if cursor:
            self.access.store.put(
                self.access.namespace, DELTA_KEY, {"folder": self.settings.folder, "link": cursor}
            )

    def _api_raw(self, message_id: str) -> bytes | None:
        try:
            meta = self.api.request(
                "GET", f"/me/messages/{quote(message_id)}", params={"$select": "parentFolderId"}
            ).json()
            if meta.get("parentFolderId") != self._folder_id:
                return None  # filed meanwhile (by another instance, or a person)
            return self.api.request("GET", f"/me/messages/{quote(message_id)}/$value").content
        except MailApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _api_file(self, message_id: str, processed: bool) -> None:
        target = self._processed if processed else self._failed
        self.api.request(
            "POST", f"/me/messages/{quote(message_id)}/move", json={"destinationId": target}
        )

    def _api_count(self) -> str:
        info = self.api.request("GET", f"/me/mailFolders/{quote(self._folder)}").json()
        return f"{info.get('totalItemCount', 0)} mail(s), {info.get('unreadItemCount', 0)} unread"


class GraphMailSender(ApiMailSender):
    """``[mail_out] transport = "graph"``: sendMail (method "smtp") or a message created in
    imap_folder (method "imap"); blocking HTTP in a worker thread."""

    transport = "graph"

    def _api_client(self, access: MailboxAccess) -> MailApi:
        return graph_api(access.config, access)

    def _api_folder(self, name: str) -> str:
        return folder_id(self.api, name, create=True)

    def _api_store(self, message: EmailMessage, folder: str) -> None:
        self.api.request(
            "POST",
            f"/me/mailFolders/{quote(folder)}/messages",
            content=_mime(message),
            headers={"Content-Type": "text/plain"},
        )

    def _api_send(self, message: EmailMessage) -> None:
        self.api.request(
            "POST", "/me/sendMail", content=_mime(message), headers={"Content-Type": "text/plain"}
        )


def _mime(message: EmailMessage) -> bytes:
    """Graph takes a MIME message as base64 in a text/plain body."""
    return base64.b64encode(message.as_bytes(policy=SMTP_POLICY))
