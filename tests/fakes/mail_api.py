"""The mail parts of the Microsoft Graph and Gmail stand-ins (tests/fakes/graph.py,
tests/fakes/google_calendar.py): mailboxes of MIME messages in folders (Graph) or with labels
(Gmail), answering the routes the hub calls in their documented wire format.

Graph: mailFolders (list with $filter on displayName, create, get), messages/delta paged by
``@odata.nextLink`` (two per page) up to an ``@odata.deltaLink``, messages/{id} and
``$value``, move (a new id, as Graph does), sendMail and messages created in a folder (MIME
in base64, Content-Type text/plain). Gmail: labels (list, create, get), messages.list by
label, history.list from startHistoryId (404 when too old), messages.get?format=raw,
messages.modify, messages.send and messages.insert (``raw``, base64url).

Callers hold the owning fake's lock; routes get the signed-in user from its token check.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

PAGE = 2


def _error(status: int, code: str, message: str) -> tuple[int, Any]:
    return status, {"error": {"code": code, "message": message}}


@dataclass
class _GraphMessage:
    id: str
    user: str
    folder: str
    mime: bytes
    seq: int


@dataclass
class GraphMail:
    """Folders and messages by user; what was sent."""

    folders: dict[str, dict[str, str]] = field(default_factory=dict)  # user -> id -> name
    messages: dict[str, _GraphMessage] = field(default_factory=dict)
    sent: list[tuple[str, bytes]] = field(default_factory=list)  # (user, MIME)
    # (user, folder id, seq) of messages that left a folder, for @removed entries.
    removed: list[tuple[str, str, str, int]] = field(default_factory=list)
    _seq: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _skips: dict[str, tuple[list[dict[str, Any]], str]] = field(default_factory=dict)

    def _folders(self, user: str) -> dict[str, str]:
        return self.folders.setdefault(
            user, {f"AAMk-inbox-{user}": "Inbox", f"AAMk-sent-{user}": "Sent Items"}
        )

    def folder_named(self, user: str, name: str) -> str | None:
        for fid, shown in self._folders(user).items():
            if shown.lower() == name.lower():
                return fid
        return None

    def _resolve(self, user: str, ref: str) -> str | None:
        ref = unquote(ref)
        well_known = {"inbox": "Inbox", "sentitems": "Sent Items"}
        if ref.lower() in well_known:
            return self.folder_named(user, well_known[ref.lower()])
        return ref if ref in self._folders(user) else None

    def deliver(self, user: str, folder: str, mime: bytes) -> str:
        """Put MIME in USER's FOLDER (a display name); its id."""
        fid = self.folder_named(user, folder)
        if fid is None:
            fid = self._new_folder(user, folder)
        return self._add(user, fid, mime)

    def in_folder(self, user: str, folder: str) -> list[bytes]:
        fid = self.folder_named(user, folder)
        return [m.mime for m in self.messages.values() if m.user == user and m.folder == fid]

    def _new_folder(self, user: str, name: str) -> str:
        fid = f"AAMk-folder-{next(self._ids)}"
        self._folders(user)[fid] = name
        return fid

    def _add(self, user: str, fid: str, mime: bytes) -> str:
        self._seq += 1
        mid = f"AAMkAGI-msg-{next(self._ids)}"
        self.messages[mid] = _GraphMessage(mid, user, fid, mime, self._seq)
        return mid

    def handle(
        self, user: str, method: str, rest: list[str], query: dict[str, str], body: bytes, url: str
    ) -> tuple[int, Any]:
        folders = self._folders(user)
        if rest == ["mailFolders"] and method == "GET":
            wanted = query.get("$filter", "")
            name = wanted.partition("displayName eq '")[2][:-1].replace("''", "'")
            value = [
                {"id": fid, "displayName": shown}
                for fid, shown in folders.items()
                if not wanted or shown == name
            ]
            return 200, {"value": value}
        if rest == ["mailFolders"] and method == "POST":
            name = json.loads(body)["displayName"]
            if self.folder_named(user, name):
                return _error(409, "ErrorFolderExists", "A folder with the specified name exists.")
            return 201, {"id": self._new_folder(user, name), "displayName": name}
        if rest[:1] == ["mailFolders"] and len(rest) >= 2:
            fid = self._resolve(user, rest[1])
            if fid is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found.")
            inside = [m for m in self.messages.values() if m.user == user and m.folder == fid]
            if len(rest) == 2 and method == "GET":
                return 200, {
                    "id": fid,
                    "displayName": folders[fid],
                    "totalItemCount": len(inside),
                    "unreadItemCount": len(inside),
                }
            if rest[2:] == ["messages"] and method == "POST":
                mime = _mime_b64(body)
                if mime is None:
                    return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64.")
                return 201, {"id": self._add(user, fid, mime), "parentFolderId": fid}
            if rest[2:] == ["messages", "delta"] and method == "GET":
                return self._delta(user, fid, inside, query, url)
        if rest == ["sendMail"] and method == "POST":
            mime = _mime_b64(body)
            if mime is None:
                return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64.")
            self.sent.append((user, mime))
            sent = self.folder_named(user, "Sent Items")
            assert sent is not None
            self._add(user, sent, mime)
            return 202, None
        if rest[:1] == ["messages"] and len(rest) >= 2:
            found = self.messages.get(unquote(rest[1]))
            if found is None or found.user != user:
                return _error(404, "ErrorItemNotFound", "The specified object was not found.")
            if len(rest) == 2 and method == "GET":
                return 200, {"id": found.id, "parentFolderId": found.folder}
            if rest[2:] == ["$value"] and method == "GET":
                return 200, found.mime
            if rest[2:] == ["move"] and method == "POST":
                target = self._resolve(user, json.loads(body).get("destinationId", ""))
                if target is None:
                    return _error(404, "ErrorItemNotFound", "The destination was not found.")
                del self.messages[found.id]
                self.removed.append((user, found.folder, found.id, self._seq + 1))
                moved = self._add(user, target, found.mime)
                return 201, {"id": moved, "parentFolderId": target}
        return _error(400, "BadRequest", f"Unsupported {method} /me/{'/'.join(rest)}")

    def _delta(
        self,
        user: str,
        fid: str,
        inside: list[_GraphMessage],
        query: dict[str, str],
        url: str,
    ) -> tuple[int, Any]:
        base = f"{url}/v1.0/me/mailFolders/{fid}/messages/delta"
        if "$skiptoken" in query:
            kept = self._skips.pop(query["$skiptoken"], None)
            if kept is None:
                return _error(410, "SyncStateNotFound", "The sync state was not found.")
            items, final = kept
        else:
            since = int(query.get("$deltatoken", "0") or 0)
            items = [{"id": m.id} for m in sorted(inside, key=lambda m: m.seq) if m.seq > since]
            items += [
                {"id": mid, "@removed": {"reason": "deleted"}}
                for u, f, mid, seq in self.removed
                if u == user and f == fid and seq > since and since
            ]
            final = str(self._seq)
        page, rest = items[:PAGE], items[PAGE:]
        answer: dict[str, Any] = {"value": page}
        if rest:
            token = f"skip-{next(self._ids)}"
            self._skips[token] = (rest, final)
            answer["@odata.nextLink"] = f"{base}?$skiptoken={token}"
        else:
            answer["@odata.deltaLink"] = f"{base}?$deltatoken={final}"
        return 200, answer


def _mime_b64(body: bytes) -> bytes | None:
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return None


def _b64url(raw: str) -> bytes:
    return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))


@dataclass
class _GmailMessage:
    id: str
    user: str
    labels: set[str]
    mime: bytes


@dataclass
class GmailMail:
    """Labels and messages by user; history of added messages; what was sent."""

    labels: dict[str, dict[str, str]] = field(default_factory=dict)  # user -> id -> name
    messages: dict[str, _GmailMessage] = field(default_factory=dict)
    # (history id, user, message id, labels when added)
    history: list[tuple[int, str, str, frozenset[str]]] = field(default_factory=list)
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    # History ids at or below this are too old (404), as after a week in Gmail.
    oldest_history: int = 0
    _history_id: int = 1000
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _labels(self, user: str) -> dict[str, str]:
        return self.labels.setdefault(
            user, {n: n for n in ("INBOX", "SENT", "UNREAD", "SPAM", "TRASH")}
        )

    def label_named(self, user: str, name: str) -> str | None:
        for lid, shown in self._labels(user).items():
            if shown == name:
                return lid
        return None

    def deliver(self, user: str, label: str, mime: bytes) -> str:
        lid = self.label_named(user, label) or self._new_label(user, label)
        return self._add(user, {lid, "UNREAD"}, mime)

    def with_label(self, user: str, name: str) -> list[bytes]:
        lid = self.label_named(user, name)
        return [m.mime for m in self.messages.values() if m.user == user and lid in m.labels]

    def expire_history(self) -> None:
        self.oldest_history = self._history_id

    def _new_label(self, user: str, name: str) -> str:
        lid = f"Label_{next(self._ids)}"
        self._labels(user)[lid] = name
        return lid

    def _add(self, user: str, labels: set[str], mime: bytes) -> str:
        mid = f"18c{next(self._ids):013x}"
        self.messages[mid] = _GmailMessage(mid, user, labels, mime)
        self._history_id += 1
        self.history.append((self._history_id, user, mid, frozenset(labels)))
        return mid

    def handle(
        self, user: str, method: str, rest: list[str], query: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        labels = self._labels(user)
        if rest == ["profile"] and method == "GET":
            return 200, {"emailAddress": user, "historyId": str(self._history_id)}
        if rest == ["labels"] and method == "GET":
            return 200, {"labels": [{"id": i, "name": n} for i, n in labels.items()]}
        if rest == ["labels"] and method == "POST":
            name = json.loads(body)["name"]
            if self.label_named(user, name):
                return _error(409, "409", "Label name exists or conflicts")
            return 200, {"id": self._new_label(user, name), "name": name}
        if rest[:1] == ["labels"] and len(rest) == 2 and method == "GET":
            lid = unquote(rest[1])
            if lid not in labels:
                return _error(404, "404", "Requested entity was not found.")
            inside = [m for m in self.messages.values() if m.user == user and lid in m.labels]
            return 200, {
                "id": lid,
                "name": labels[lid],
                "messagesTotal": len(inside),
                "messagesUnread": sum("UNREAD" in m.labels for m in inside),
            }
        if rest == ["history"] and method == "GET":
            start = int(query.get("startHistoryId", "0"))
            if start <= self.oldest_history:
                return _error(404, "404", "Requested entity was not found.")
            lid = query.get("labelId")
            found = [
                {"id": str(h), "messagesAdded": [{"message": {"id": mid, "labelIds": sorted(ls)}}]}
                for h, u, mid, ls in self.history
                if u == user and h > start and (lid is None or lid in ls)
            ]
            return 200, {"history": found, "historyId": str(self._history_id)}
        if rest == ["messages"] and method == "GET":
            lid = query.get("labelIds")
            found = [
                {"id": m.id, "threadId": m.id}
                for m in self.messages.values()
                if m.user == user and (lid is None or lid in m.labels)
            ]
            return 200, {"messages": found, "resultSizeEstimate": len(found)}
        if rest == ["messages"] and method == "POST":  # messages.insert
            data = json.loads(body)
            wanted = set(data.get("labelIds", []))
            if not wanted <= set(labels):
                return _error(400, "400", "Invalid label")
            mid = self._add(user, wanted, _b64url(data["raw"]))
            return 200, {"id": mid, "labelIds": sorted(wanted)}
        if rest == ["messages", "send"] and method == "POST":
            mime = _b64url(json.loads(body)["raw"])
            self.sent.append((user, mime))
            return 200, {"id": self._add(user, {"SENT"}, mime), "labelIds": ["SENT"]}
        if rest[:1] == ["messages"] and len(rest) >= 2:
            found_msg = self.messages.get(unquote(rest[1]))
            if found_msg is None or found_msg.user != user:
                return _error(404, "404", "Requested entity was not found.")
            if len(rest) == 2 and method == "GET":
                answer: dict[str, Any] = {"id": found_msg.id, "labelIds": sorted(found_msg.labels)}
                if query.get("format") == "raw":
                    answer["raw"] = base64.urlsafe_b64encode(found_msg.mime).decode()
                return 200, answer
            if rest[2:] == ["modify"] and method == "POST":
                data = json.loads(body)
                add, remove = set(data.get("addLabelIds", [])), set(data.get("removeLabelIds", []))
                if not add <= set(labels):
                    return _error(400, "400", "Invalid label")
                found_msg.labels = (found_msg.labels | add) - remove
                return 200, {"id": found_msg.id, "labelIds": sorted(found_msg.labels)}
        return _error(404, "404", f"Unsupported {method} users/me/{'/'.join(rest)}")
