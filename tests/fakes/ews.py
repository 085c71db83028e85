"""A local stand-in for an on-premises Exchange Server's EWS endpoint (/EWS/Exchange.asmx).

A real HTTP server (stdlib, in a thread) that speaks the part of EWS's SOAP that exchangelib
uses to read and annotate a calendar, following the EWS reference (learn.microsoft.com,
"EWS reference for Exchange"):

* ``ConvertId``: exchangelib's version probe when no version is configured; answered with the
  ``ErrorInvalidIdMalformed`` a real server gives for its dummy id, and the version header;
* ``GetFolder``: the distinguished folders ``root``/``msgfolderroot`` and ``calendar`` of the
  mailbox (``ErrorNonExistentMailbox`` for another mailbox);
* ``FindItem``: with a ``CalendarView`` (single items, occurrences and exceptions whose time
  overlaps the range, recurring masters never; the first ``MaxEntriesReturned`` with
  ``IncludesLastItemInRange="false"`` when there are more), or an ``IndexedPageItemView``
  (single items and masters, paged);
* ``GetItem``: by ``ItemId``, with the ``AdditionalProperties`` asked;
* ``UpdateItem``: ``SetItemField`` of ``item:Body`` (what annotating does), honouring
  ``ConflictResolution="NeverOverwrite"`` against a stale ``ChangeKey``; an occurrence whose
  body changes becomes an exception, as on a real server.

Every answer carries the ``ServerVersionInfo`` header of an Exchange 2016 CU. Login is HTTP
Basic (401 with ``WWW-Authenticate`` on a wrong password); NTLM is not spoken. Times are kept
in UTC, as Exchange stores them, with the Windows zone the event was created in.

The calendar is edited by the tests through :class:`EwsFake` (``add_event``,
``add_all_day``, ``add_series``, ``move_occurrence``, ``cancel_occurrence``,
``delete_occurrence``, ``throttle``). Where the reference is silent (the order of items in a
view, the wording of messages), the choices are marked "not documented".
"""

from __future__ import annotations

import base64
import html
import itertools
import re
import secrets
import threading
import time as time_module
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from tests.servers._util import BackgroundServer

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"

USERNAME = "CLINIC\\reception"
PASSWORD = "s3cret-ews"
MAILBOX = "reception@clinic.example"

# Exchange 2016 CU23 reports this; "V2017_07_11" is the schema the server speaks.
_VERSION_HEADER = (
    f'<h:ServerVersionInfo xmlns:h="{T}" MajorVersion="15" MinorVersion="1" '
    'MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11"/>'
)
_ROOT_ID = "AQMkADAwATM0MDAAMS1iNmNkLWVkZjAtMDACLTAwCgAuAAADroot"
_CALENDAR_ID = "AQMkADAwATM0MDAAMS1iNmNkLWVkZjAtMDACLTAwCgAuAAADcal="

# The display names of the Windows zones used in tests (not needed by clients; cosmetic).
_ZONE_NAMES = {
    "Romance Standard Time": "(UTC+01:00) Brussels, Copenhagen, Madrid, Paris",
    "W. Europe Standard Time": "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna",
    "Eastern Standard Time": "(UTC-05:00) Eastern Time (US & Canada)",
    "UTC": "(UTC) Coordinated Universal Time",
}


def iana(windows_zone: str) -> ZoneInfo:
    """The zone a Windows zone name stands for (the fake's own mapping, not exchangelib's)."""
    if windows_zone == "UTC":
        return ZoneInfo("UTC")
    return ZoneInfo(WINDOWS_TO_OLSON[windows_zone])


def _new_id(prefix: str = "AAMkAGI2") -> str:
    # Real ids are base64 with + / and = in them: worth carrying through every layer.
    return prefix + base64.b64encode(secrets.token_bytes(30)).decode("ascii") + "="


def _new_changekey() -> str:
    return "DwAAABYAAAA" + base64.b64encode(secrets.token_bytes(12)).decode("ascii")


def _z(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class EwsItem:
    """One calendar item as the server stores it: times in UTC, the zone it was made in."""

    item_id: str
    changekey: str
    uid: str
    subject: str
    start: datetime
    end: datetime
    timezone: str = "Romance Standard Time"
    is_all_day: bool = False
    location: str = ""
    body: str = ""
    body_type: str = "HTML"
    # (name, e-mail) of the required and the optional attendees.
    attendees: list[tuple[str, str]] = field(default_factory=list)
    optional: list[tuple[str, str]] = field(default_factory=list)
    is_cancelled: bool = False
    free_busy: str = "Busy"
    # Single, Occurrence, Exception or RecurringMaster (the EWS CalendarItemType).
    kind: str = "Single"
    original_start: datetime | None = None
    master_id: str | None = None
    created: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def touch(self) -> None:
        self.changekey = _new_changekey()
        self.modified = datetime.now(UTC).replace(microsecond=0)


@dataclass
class EwsFake:
    """State of the fake Exchange server; the server thread reads it under ``lock``."""

    username: str = USERNAME
    password: str = PASSWORD
    mailbox: str = MAILBOX
    items: dict[str, EwsItem] = field(default_factory=dict)
    # The SOAP operation of every request that got past the login, in order.
    operations: list[str] = field(default_factory=list)
    # Raw request bodies (for tests that look at what the client asked).
    bodies: list[str] = field(default_factory=list)
    # Attributes of each UpdateItem element (SendMeetingInvitationsOrCancellations...).
    updates: list[dict[str, str]] = field(default_factory=list)
    # BackOffMilliseconds of the ErrorServerBusy faults to answer next, one per request.
    busy: list[int] = field(default_factory=list)
    # Seconds to wait before answering each request (a server that hangs).
    delay: float = 0.0
    # UpdateItems to refuse with ErrorIrresolvableConflict (as if Outlook saved in between).
    conflicts: int = 0
    logins_refused: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _uids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def endpoint(self) -> str:
        """The service endpoint to configure: http://127.0.0.1:PORT/EWS/Exchange.asmx."""
        return f"{self.url}/EWS/Exchange.asmx"

    # -- editing the calendar ------------------------------------------------------------
    def _uid(self) -> str:
        # Exchange's UIDs for items made in Outlook: 040000008200E00074C5B7101A82E008...
        return f"040000008200E00074C5B7101A82E00800000000{next(self._uids):032X}"

    def add_event(
        self,
        subject: str,
        start: datetime,
        zone: str = "Romance Standard Time",
        minutes: int = 30,
        **fields: Any,
    ) -> EwsItem:
        """A single appointment at START (naive: local time in the Windows ZONE)."""
        begin = _utc(start, zone)
        item = EwsItem(
            item_id=_new_id(),
            changekey=_new_changekey(),
            uid=fields.pop("uid", None) or self._uid(),
            subject=subject,
            start=begin,
            end=begin + timedelta(minutes=minutes),
            timezone=zone,
            **fields,
        )
        with self.lock:
            self.items[item.item_id] = item
        return item

    def add_all_day(
        self,
        subject: str,
        day: date,
        zone: str = "Romance Standard Time",
        days: int = 1,
        **fields: Any,
    ) -> EwsItem:
        """An all-day event: midnight to midnight in ZONE, stored in UTC as Exchange does."""
        begin = _utc(datetime.combine(day, time()), zone)
        end = _utc(datetime.combine(day + timedelta(days=days), time()), zone)
        item = EwsItem(
            item_id=_new_id(),
            changekey=_new_changekey(),
            uid=fields.pop("uid", None) or self._uid(),
            subject=subject,
            start=begin,
            end=end,
            timezone=zone,
            is_all_day=True,
            free_busy=fields.pop("free_busy", "Free"),
            **fields,
        )
        with self.lock:
            self.items[item.item_id] = item
        return item

    def add_series(
        self,
        subject: str,
        first: datetime,
        count: int,
        zone: str = "Romance Standard Time",
        every: timedelta = timedelta(days=7),
        minutes: int = 30,
        **fields: Any,
    ) -> EwsItem:
        """A recurring series of COUNT occurrences from FIRST (local time in ZONE), EVERY apart.

        The local time is kept across DST changes, as Exchange does. Returns the master;
        ``occurrences(uid)`` lists the occurrences.
        """
        local = iana(zone)
        uid = fields.pop("uid", None) or self._uid()
        master = EwsItem(
            item_id=_new_id(),
            changekey=_new_changekey(),
            uid=uid,
            subject=subject,
            start=_utc(first, zone),
            end=_utc(first, zone) + timedelta(minutes=minutes),
            timezone=zone,
            kind="RecurringMaster",
            **fields,
        )
        made = [master]
        for index in range(count):
            begin = (first + every * index).replace(tzinfo=local).astimezone(UTC)
            made.append(
                EwsItem(
                    item_id=_new_id(),
                    changekey=_new_changekey(),
                    uid=uid,
                    subject=subject,
                    start=begin,
                    end=begin + timedelta(minutes=minutes),
                    timezone=zone,
                    kind="Occurrence",
                    original_start=begin,
                    master_id=master.item_id,
                    **fields,
                )
            )
        with self.lock:
            for item in made:
                self.items[item.item_id] = item
        return master

    def occurrences(self, uid: str) -> list[EwsItem]:
        """The occurrences and exceptions of series UID, by original start."""
        with self.lock:
            found = [
                i
                for i in self.items.values()
                if i.uid == uid and i.kind in ("Occurrence", "Exception")
            ]
        return sorted(found, key=lambda i: i.original_start or i.start)

    def move_occurrence(self, uid: str, index: int, start: datetime) -> EwsItem:
        """Move occurrence INDEX (0-based) of series UID to START (local time in its zone)."""
        item = self.occurrences(uid)[index]
        with self.lock:
            length = item.end - item.start
            item.start = _utc(start, item.timezone)
            item.end = item.start + length
            item.kind = "Exception"
            item.touch()
        return item

    def cancel_occurrence(self, uid: str, index: int) -> EwsItem:
        """The organizer cancelled occurrence INDEX: an attendee's copy stays, marked cancelled."""
        item = self.occurrences(uid)[index]
        with self.lock:
            item.is_cancelled = True
            item.subject = f"Canceled: {item.subject}"
            item.kind = "Exception"
            item.touch()
        return item

    def delete_occurrence(self, uid: str, index: int) -> None:
        """Delete occurrence INDEX: it disappears from every view."""
        item = self.occurrences(uid)[index]
        with self.lock:
            del self.items[item.item_id]

    def item(self, item_id: str) -> EwsItem:
        with self.lock:
            return self.items[item_id]

    def throttle(self, times: int = 1, back_off_ms: int = 50) -> None:
        """Answer the next TIMES requests with ErrorServerBusy asking to wait BACK_OFF_MS."""
        with self.lock:
            self.busy.extend([back_off_ms] * times)

    # -- answering ----------------------------------------------------------------------
    def answer(self, body: bytes) -> tuple[int, str]:
        """(HTTP status, SOAP envelope) for one authenticated request."""
        text = body.decode("utf-8")
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            return 500, _fault("a:ErrorSchemaValidation", f"The request is not valid XML: {exc}")
        request = root.find(f"{{{SOAP}}}Body")
        if request is None or len(request) == 0:
            return 500, _fault("a:ErrorInvalidRequest", "The request has no SOAP Body.")
        operation = request[0]
        name = operation.tag.rsplit("}", 1)[-1]
        with self.lock:
            self.operations.append(name)
            self.bodies.append(text)
            if self.busy:
                return 500, _busy_fault(self.busy.pop(0))
            handler = getattr(self, f"_op_{name}", None)
            if handler is None:
                return 500, _fault(
                    "a:ErrorInvalidOperation", f"The fake does not implement {name}."
                )
            return 200, _envelope(handler(operation))

    # Each _op_ method returns the body of the SOAP answer; called with the lock held.
    def _op_ConvertId(self, op: ET.Element) -> str:
        messages = "".join(
            _error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")
            for _ in op.iter(f"{{{T}}}AlternateId")
        )
        return _response("ConvertId", messages)

    def _op_GetFolder(self, op: ET.Element) -> str:
        shape = _shape(op.find(f"{{{M}}}FolderShape"))
        messages = []
        for ref in _children(op, "FolderIds"):
            tag = ref.tag.rsplit("}", 1)[-1]
            if tag == "DistinguishedFolderId":
                address = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
                if address is not None and address.lower() != self.mailbox.lower():
                    messages.append(
                        _error(
                            "GetFolder",
                            "ErrorNonExistentMailbox",
                            "The SMTP address has no mailbox associated with it.",
                        )
                    )
                    continue
                wanted = ref.get("Id", "")
            else:
                wanted = {_ROOT_ID: "root", _CALENDAR_ID: "calendar"}.get(ref.get("Id", ""), "")
            if wanted in ("root", "msgfolderroot"):
                folder = self._folder(
                    "Folder", _ROOT_ID, wanted, "", "Top of Information Store", shape
                )
            elif wanted == "calendar":
                folder = self._folder(
                    "CalendarFolder", _CALENDAR_ID, "calendar", "IPF.Appointment", "Calendar", shape
                )
            else:
                messages.append(
                    _error(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
                continue
            messages.append(_success("GetFolder", f"<m:Folders>{folder}</m:Folders>"))
        return _response("GetFolder", "".join(messages))

    def _folder(
        self, tag: str, folder_id: str, distinguished: str, klass: str, name: str, shape: _Shape
    ) -> str:
        calendar = tag == "CalendarFolder"
        count = sum(1 for i in self.items.values() if i.kind != "Occurrence") if calendar else 0
        parts = {
            "folder:FolderId": f'<t:FolderId Id="{folder_id}" ChangeKey="AQAAABYAAAAoaJ6D"/>',
            "folder:ParentFolderId": f'<t:ParentFolderId Id="{_ROOT_ID}" ChangeKey="AQAAAA=="/>',
            "folder:FolderClass": f"<t:FolderClass>{klass}</t:FolderClass>" if klass else "",
            "folder:DisplayName": f"<t:DisplayName>{html.escape(name)}</t:DisplayName>",
            "folder:TotalCount": f"<t:TotalCount>{count}</t:TotalCount>",
            "folder:ChildFolderCount": "<t:ChildFolderCount>0</t:ChildFolderCount>",
            "folder:EffectiveRights": (
                "<t:EffectiveRights><t:CreateAssociated>true</t:CreateAssociated>"
                "<t:CreateContents>true</t:CreateContents>"
                "<t:CreateHierarchy>true</t:CreateHierarchy><t:Delete>true</t:Delete>"
                "<t:Modify>true</t:Modify><t:Read>true</t:Read>"
                "<t:ViewPrivateItems>true</t:ViewPrivateItems></t:EffectiveRights>"
            ),
            "folder:DistinguishedFolderId": (
                f"<t:DistinguishedFolderId>{distinguished}</t:DistinguishedFolderId>"
            ),
            # Calendar folders have no unread count (FolderType vs CalendarFolderType).
            "folder:UnreadCount": "" if calendar else "<t:UnreadCount>0</t:UnreadCount>",
        }
        wanted = shape.fields if shape.base == "IdOnly" else set(parts)
        inner = parts["folder:FolderId"] + "".join(
            value for key, value in parts.items() if key != "folder:FolderId" and key in wanted
        )
        return f"<t:{tag}>{inner}</t:{tag}>"

    def _op_FindItem(self, op: ET.Element) -> str:
        shape = _shape(op.find(f"{{{M}}}ItemShape"))
        for ref in _children(op, "ParentFolderIds"):
            address = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
            known = ref.get("Id") in ("calendar", _CALENDAR_ID)
            if not known or (address is not None and address.lower() != self.mailbox.lower()):
                return _response(
                    "FindItem",
                    _error(
                        "FindItem",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    ),
                )
        view = op.find(f"{{{M}}}CalendarView")
        if view is not None:
            start = _parse_time(view.get("StartDate", ""))
            end = _parse_time(view.get("EndDate", ""))
            if end < start:
                return _response(
                    "FindItem",
                    _error(
                        "FindItem",
                        "ErrorCalendarEndDateIsEarlierThanStartDate",
                        "EndDate is earlier than StartDate",
                    ),
                )
            # The reference: items ending before StartDate and items starting on or after
            # EndDate are left out. Order by start: not documented (what servers do).
            found = sorted(
                (
                    i
                    for i in self.items.values()
                    if i.kind != "RecurringMaster" and i.end >= start and i.start < end
                ),
                key=lambda i: (i.start, i.item_id),
            )
            limit = int(view.get("MaxEntriesReturned") or 0) or len(found)
            page = found[:limit]
            last = len(page) == len(found)
            root_attrs = (
                f'TotalItemsInView="{len(found)}" IncludesLastItemInRange="{str(last).lower()}"'
            )
        else:
            paging = op.find(f"{{{M}}}IndexedPageItemView")
            offset = int(paging.get("Offset", "0")) if paging is not None else 0
            limit = int(paging.get("MaxEntriesReturned") or 0) if paging is not None else 0
            found = sorted(
                (i for i in self.items.values() if i.kind in ("Single", "RecurringMaster")),
                key=lambda i: (i.start, i.item_id),
            )
            page = found[offset : offset + limit] if limit else found[offset:]
            last = offset + len(page) >= len(found)
            root_attrs = (
                f'IndexedPagingOffset="{offset + len(page)}" TotalItemsInView="{len(found)}" '
                f'IncludesLastItemInRange="{str(last).lower()}"'
            )
        items = "".join(self._render(i, shape) for i in page)
        return _response(
            "FindItem",
            _success(
                "FindItem", f"<m:RootFolder {root_attrs}><t:Items>{items}</t:Items></m:RootFolder>"
            ),
        )

    def _op_GetItem(self, op: ET.Element) -> str:
        shape = _shape(op.find(f"{{{M}}}ItemShape"))
        messages = []
        for ref in _children(op, "ItemIds"):
            item = self.items.get(ref.get("Id", ""))
            if item is None:
                messages.append(
                    _error(
                        "GetItem",
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    )
                )
                continue
            messages.append(_success("GetItem", f"<m:Items>{self._render(item, shape)}</m:Items>"))
        return _response("GetItem", "".join(messages))

    def _op_UpdateItem(self, op: ET.Element) -> str:
        self.updates.append(dict(op.attrib))
        never_overwrite = op.get("ConflictResolution") == "NeverOverwrite"
        messages = []
        for change in op.iter(f"{{{T}}}ItemChange"):
            ref = change.find(f"{{{T}}}ItemId")
            item = self.items.get(ref.get("Id", "")) if ref is not None else None
            if item is None or ref is None:
                messages.append(
                    _error(
                        "UpdateItem",
                        "ErrorItemNotFound",
                        "The specified object was not found in the store.",
                    )
                )
                continue
            sent_key = ref.get("ChangeKey")
            if self.conflicts > 0:
                self.conflicts -= 1
                item.touch()  # someone else saved the item just now
            if never_overwrite and sent_key and sent_key != item.changekey:
                messages.append(
                    _error(
                        "UpdateItem",
                        "ErrorIrresolvableConflict",
                        "The send or update operation could not be performed because the change "
                        "key passed in the request does not match the current change key for "
                        "the item.",
                    )
                )
                continue
            for update in change.iter(f"{{{T}}}SetItemField"):
                uri = update.find(f"{{{T}}}FieldURI")
                body = update.find(f".//{{{T}}}Body")
                if uri is not None and uri.get("FieldURI") == "item:Body" and body is not None:
                    item.body = body.text or ""
                    item.body_type = body.get("BodyType", "Text")
            if item.kind == "Occurrence":
                item.kind = "Exception"  # a modified occurrence is an exception from now on
            item.touch()
            messages.append(
                _success(
                    "UpdateItem",
                    f'<m:Items><t:CalendarItem><t:ItemId Id="{item.item_id}" '
                    f'ChangeKey="{item.changekey}"/></t:CalendarItem></m:Items>'
                    "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
                )
            )
        return _response("UpdateItem", "".join(messages))

    def _render(self, item: EwsItem, shape: _Shape) -> str:
        """A t:CalendarItem with the properties SHAPE asks for, in the schema's order."""
        wanted = shape.fields if shape.base == "IdOnly" else set(_DEFAULT_PROPERTIES) | shape.fields
        shown = html.escape(_ZONE_NAMES.get(item.timezone, item.timezone))
        zone = f'Id="{item.timezone}" Name="{shown}"'
        recurring = item.kind != "Single"
        body = item.body
        body_type = item.body_type
        if shape.body_type == "Text" and body_type == "HTML":
            body, body_type = _text_of(body), "Text"
        parts: list[tuple[str, str]] = [
            (
                "item:ParentFolderId",
                f'<t:ParentFolderId Id="{_CALENDAR_ID}" ChangeKey="AQAAAA=="/>',
            ),
            ("item:ItemClass", "<t:ItemClass>IPM.Appointment</t:ItemClass>"),
            ("item:Subject", f"<t:Subject>{html.escape(item.subject)}</t:Subject>"),
            ("item:Body", f'<t:Body BodyType="{body_type}">{html.escape(body)}</t:Body>'),
            ("item:DateTimeCreated", f"<t:DateTimeCreated>{_z(item.created)}</t:DateTimeCreated>"),
            (
                "item:LastModifiedTime",
                f"<t:LastModifiedTime>{_z(item.modified)}</t:LastModifiedTime>",
            ),
            ("calendar:UID", f"<t:UID>{item.uid}</t:UID>"),
            (
                "calendar:RecurrenceId",
                f"<t:RecurrenceId>{_z(item.original_start)}</t:RecurrenceId>"
                if item.original_start
                else "",
            ),
            ("calendar:Start", f"<t:Start>{_z(item.start)}</t:Start>"),
            ("calendar:End", f"<t:End>{_z(item.end)}</t:End>"),
            (
                "calendar:OriginalStart",
                f"<t:OriginalStart>{_z(item.original_start)}</t:OriginalStart>"
                if item.original_start
                else "",
            ),
            (
                "calendar:IsAllDayEvent",
                f"<t:IsAllDayEvent>{_bool(item.is_all_day)}</t:IsAllDayEvent>",
            ),
            (
                "calendar:LegacyFreeBusyStatus",
                f"<t:LegacyFreeBusyStatus>{item.free_busy}</t:LegacyFreeBusyStatus>",
            ),
            ("calendar:Location", f"<t:Location>{html.escape(item.location)}</t:Location>"),
            ("calendar:IsMeeting", f"<t:IsMeeting>{_bool(bool(item.attendees))}</t:IsMeeting>"),
            ("calendar:IsCancelled", f"<t:IsCancelled>{_bool(item.is_cancelled)}</t:IsCancelled>"),
            ("calendar:IsRecurring", f"<t:IsRecurring>{_bool(recurring)}</t:IsRecurring>"),
            ("calendar:CalendarItemType", f"<t:CalendarItemType>{item.kind}</t:CalendarItemType>"),
            (
                "calendar:Organizer",
                "<t:Organizer>" + _mailbox("Reception", self.mailbox) + "</t:Organizer>",
            ),
            ("calendar:RequiredAttendees", _attendees("RequiredAttendees", item.attendees)),
            ("calendar:OptionalAttendees", _attendees("OptionalAttendees", item.optional)),
            ("calendar:StartTimeZone", f"<t:StartTimeZone {zone}/>"),
            ("calendar:EndTimeZone", f"<t:EndTimeZone {zone}/>"),
        ]
        inner = f'<t:ItemId Id="{item.item_id}" ChangeKey="{item.changekey}"/>' + "".join(
            value for key, value in parts if key in wanted
        )
        return f"<t:CalendarItem>{inner}</t:CalendarItem>"

    def check_login(self, header: str | None) -> bool:
        """True when the Authorization header carries the right Basic credentials."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        # Windows accepts DOMAIN\user and the UPN, whatever the case of the user name.
        names = {self.username.lower(), self.mailbox.lower()}
        return user.lower() in names and password == self.password


# Properties of the "Default" and "AllProperties" shapes that matter here (the real lists
# are longer).
_DEFAULT_PROPERTIES = (
    "item:Subject",
    "item:ItemClass",
    "calendar:UID",
    "calendar:Start",
    "calendar:End",
    "calendar:IsAllDayEvent",
    "calendar:LegacyFreeBusyStatus",
    "calendar:Location",
    "calendar:CalendarItemType",
    "calendar:Organizer",
)


@dataclass
class _Shape:
    base: str = "IdOnly"
    fields: set[str] = field(default_factory=set)
    body_type: str = "Best"


def _shape(elem: ET.Element | None) -> _Shape:
    if elem is None:
        return _Shape()
    shape = _Shape(base=elem.findtext(f"{{{T}}}BaseShape") or "IdOnly")
    shape.body_type = elem.findtext(f"{{{T}}}BodyType") or "Best"
    for uri in elem.iter(f"{{{T}}}FieldURI"):
        shape.fields.add(uri.get("FieldURI", ""))
    return shape


def _children(op: ET.Element, name: str) -> list[ET.Element]:
    """The child elements of OP's m:NAME element (none when it is absent)."""
    found = op.find(f"{{{M}}}{name}")
    return list(found) if found is not None else []


def _utc(local: datetime, zone: str) -> datetime:
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=iana(zone)).astimezone(UTC)


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", markup)).strip()


def _mailbox(name: str, address: str) -> str:
    return (
        f"<t:Mailbox><t:Name>{html.escape(name)}</t:Name>"
        f"<t:EmailAddress>{html.escape(address)}</t:EmailAddress>"
        "<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox>"
    )


def _attendees(tag: str, people: list[tuple[str, str]]) -> str:
    if not people:
        return ""
    inner = "".join(
        f"<t:Attendee>{_mailbox(name, address)}"
        "<t:ResponseType>Unknown</t:ResponseType></t:Attendee>"
        for name, address in people
    )
    return f"<t:{tag}>{inner}</t:{tag}>"


def _envelope(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}"><s:Header>{_VERSION_HEADER}</s:Header>'
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema">'
        f"{body}</s:Body></s:Envelope>"
    )


def _response(operation: str, messages: str) -> str:
    return (
        f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}">'
        f"<m:ResponseMessages>{messages}</m:ResponseMessages></m:{operation}Response>"
    )


def _success(operation: str, content: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success">'
        f"<m:ResponseCode>NoError</m:ResponseCode>{content}</m:{operation}ResponseMessage>"
    )


def _error(operation: str, code: str, text: str) -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error">'
        f"<m:MessageText>{html.escape(text)}</m:MessageText>"
        f"<m:ResponseCode>{code}</m:ResponseCode>"
        f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{operation}ResponseMessage>"
    )


def _fault(code: str, text: str, detail: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{T}">{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{html.escape(text)}</faultstring>'
        f"<detail>{detail}</detail></s:Fault></s:Body></s:Envelope>"
    )


def _busy_fault(back_off_ms: int) -> str:
    """The throttling fault, as documented in "EWS throttling in Exchange"."""
    text = "The server cannot service this request right now. Try again later."
    detail = (
        f'<e:ResponseCode xmlns:e="{E}">ErrorServerBusy</e:ResponseCode>'
        f'<e:Message xmlns:e="{E}">{text}</e:Message>'
        f'<t:MessageXml xmlns:t="{T}"><t:Value Name="BackOffMilliseconds">{back_off_ms}'
        "</t:Value></t:MessageXml>"
    )
    return _fault("a:ErrorServerBusy", text, detail)


class _Handler(BaseHTTPRequestHandler):
    fake: EwsFake
    # Keep-alive with Content-Length, as IIS does: exchangelib keeps its session open.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?")[0].lower() != "/ews/exchange.asmx":
            self._send(
                404, "text/html", "<html><body>404 - File or directory not found.</body></html>"
            )
            return
        if not self.fake.check_login(self.headers.get("Authorization")):
            with self.fake.lock:
                self.fake.logins_refused += 1
            self._send(
                401,
                "text/html",
                "<html><body>401 - Unauthorized: Access is denied due to invalid credentials."
                "</body></html>",
                {"WWW-Authenticate": 'Basic realm="mail.clinic.example"'},
            )
            return
        if self.fake.delay:
            time_module.sleep(self.fake.delay)
        status, answer = self.fake.answer(body)
        self._send(status, "text/xml; charset=utf-8", answer)

    def do_GET(self) -> None:  # noqa: N802
        # A browser on the endpoint gets the login prompt, then a plain page (like IIS).
        self._send(401, "text/html", "", {"WWW-Authenticate": 'Basic realm="mail.clinic.example"'})

    def _send(
        self, status: int, kind: str, text: str, headers: dict[str, str] | None = None
    ) -> None:
        data = text.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-FEServer", "EXCH01")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the tests of a hanging server)


@pytest.fixture
def ews_fake() -> Iterator[EwsFake]:
    """A running fake Exchange server; configure ``ews_fake.endpoint`` as service_endpoint."""
    fake = EwsFake()
    handler = type("EwsHandler", (_Handler,), {"fake": fake})
    with BackgroundServer(handler) as server:
        fake.url = server.url
        yield fake
