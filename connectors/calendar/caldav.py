"""CalDAV calendars (Nextcloud, Radicale, Baïkal, SOGo, iCloud, Fastmail...): read and annotate.

The ``caldav`` library is blocking, so every call runs in a worker thread with a deadline.
Recurrences are expanded here, with the ICS source's code (servers differ in server-side
expansion), one calendar resource (a master and its overrides) at a time.

Syncing:

* A full listing (no cursor) is a time-range REPORT over the window; the collection's
  ``DAV:sync-token`` is read first, so changes made during the listing show up next time.
* With a cursor, a ``sync-collection`` REPORT (RFC 6578) names the resources changed or
  deleted since; changed ones are expanded again and replace what they gave last time.
  Resources that enter the window because time passed (not because they changed) are found
  by a time-range REPORT over the new end of the window.
* The cursor carries the sync-token and, per resource, the occurrences reported from it, so a
  delta can name what disappeared: ``Removed(uid, occurrence)`` for an occurrence that left
  a series (an EXDATE added, the rule shortened, moved out of the window),
  ``Removed(uid, None)`` when the resource holding the UID was deleted. A token the server
  no longer knows raises CursorExpired; a server without sync-collection gets a full
  listing at every sync.

Annotating appends the note to the DESCRIPTION of the occurrence (of an override created
for it when a recurring event has none), written back with If-Match so a concurrent edit is
never overwritten.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import zlib
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import caldav
import icalendar
from caldav.collection import Calendar as DavCalendar
from caldav.davclient import DAVClient
from caldav.elements import cdav, dav
from caldav.lib import error as dav_error
from caldav.lib.http_sync import requests as dav_http
from pydantic import field_validator

from connectors.calendar.base import ThreadedSource
from connectors.calendar.ics import (
    calendar_timezone,
    display_url,
    expand_events,
    read_calendar,
    refused_message,
    window_slice,
)
from hub.errors import CursorExpired, SourceError
from hub.outbound import Guard, LookupFailed, OutboundRefused, guarded_session
from hub.ports.calendar import (
    CalendarEvent,
    CalendarSettings,
    Removed,
    SourceContext,
    SyncResult,
    SyncWindow,
    Timeout,
    ZoneSetting,
    occurrence_id,
)

log = logging.getLogger("smshub.calendar.caldav")

T = TypeVar("T")

_CURSOR_PREFIX = "caldav1:"
# A time-range REPORT asks this much more on each side: servers place floating times and
# all-day events in their own zone; the exact filtering is done after expansion.
_PAD = timedelta(days=1)
_CALENDAR_TYPE = cdav.Calendar.tag
_VALID_SYNC_TOKEN = dav.ValidSyncToken.tag
# Attempts to write a note when the event changes under us (412 Precondition Failed).
_ANNOTATE_ATTEMPTS = 3


class CalDavSettings(CalendarSettings):
    type: Literal["caldav"] = "caldav"
    # The calendar's collection URL, or the server's (or principal's) URL with `calendar`.
    url: str
    username: str | None = None
    # Environment variable or file holding the password (an app password on Nextcloud/iCloud).
    password_env: str | None = None
    password_file: str | None = None
    # The calendar's display name (or the last part of its URL), when url is not the calendar.
    calendar: str | None = None
    # Seconds to wait for one answer of the server, and for a whole sync or annotation.
    timeout: Timeout = 30.0
    sync_timeout: Timeout = 300.0
    # Zone of floating times and all-day events when the calendar names none.
    timezone: ZoneSetting = None
    # Check the server's TLS certificate (turn off only for a self-signed test server).
    verify_tls: bool = True
    # Let the URL reach the hub's own machine or network (loopback, private addresses...):
    # the administrator's choice (`smshub calendars add --allow-private`), never the console's.
    private_ok: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        if urlsplit(value).scheme.lower() not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value


# ---- the cursor ---------------------------------------------------------------------------


@dataclass
class _State:
    """What a sync remembers for the next one (carried in the cursor)."""

    token: str | None
    start: datetime
    until: datetime
    # Per resource path: the (uid, occurrence, end as a UTC timestamp) reported from it.
    seen: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)
    # The server gave a token but refused sync-collection: list fully every time.
    no_sync: bool = False

    def encode(self) -> str:
        data = {
            "t": self.token,
            "s": self.start.timestamp(),
            "u": self.until.timestamp(),
            "r": {href: [list(entry) for entry in entries] for href, entries in self.seen.items()},
        }
        if self.no_sync:
            data["n"] = 1
        # Compressed: a busy calendar has thousands of occurrences in the window.
        packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
        return _CURSOR_PREFIX + base64.urlsafe_b64encode(packed).decode("ascii")

    @classmethod
    def decode(cls, cursor: str) -> _State:
        """The state in CURSOR; CursorExpired when it is not one of ours."""
        if not cursor.startswith(_CURSOR_PREFIX):
            raise CursorExpired("the cursor was not made by this CalDAV source")
        try:
            data = json.loads(
                zlib.decompress(base64.urlsafe_b64decode(cursor[len(_CURSOR_PREFIX) :]))
            )
            return cls(
                token=data["t"],
                start=datetime.fromtimestamp(data["s"], UTC),
                until=datetime.fromtimestamp(data["u"], UTC),
                seen={
                    href: [(str(uid), str(occ), float(end)) for uid, occ, end in entries]
                    for href, entries in data["r"].items()
                },
                no_sync=bool(data.get("n")),
            )
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise CursorExpired(f"the cursor cannot be read ({exc})") from None


def _path(url: Any) -> str:
    """The resource's path, the same whichever way the server spelled its URL."""
    return unquote(urlsplit(str(url)).path)


def _entry(event: CalendarEvent) -> tuple[str, str, float]:
    end = event.end if event.end is not None and event.end > event.start else event.start
    return event.uid, event.occurrence, end.timestamp()


# ---- the source ---------------------------------------------------------------------------


@dataclass
class _Resource:
    """One calendar object resource as read from the server."""

    path: str
    data: str | None
    etag: str


class CalDavSource(ThreadedSource[CalDavSettings]):
    """Implements hub.ports.calendar.CalendarSource for a CalDAV calendar.

    The caldav library is not thread-safe: its calls run one at a time in a worker
    thread, within ``sync_timeout``."""

    settings_model: ClassVar[type[CalendarSettings]] = CalDavSettings

    def __init__(self, settings: CalDavSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self.shown = display_url(settings.url)
        self._password = ctx.secret(settings, "password")
        self._client: DAVClient | None = None
        self._calendar: DavCalendar | None = None

    # -- protocol -------------------------------------------------------------------------
    # No state files: the sync token and ETags travel in the cursor.

    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        """A full listing when CURSOR is None, else the changes since CURSOR."""
        state = _State.decode(cursor) if cursor else None
        return await self._call(self._sync, window, state, what="sync")

    async def _annotate(self, event: CalendarEvent, note: str) -> bool:
        """Append NOTE to the event's (occurrence's) DESCRIPTION; False if it is gone."""
        return await self._call(self._write_note, event, note, what="annotate an event")

    async def close(self) -> None:
        client, self._client, self._calendar = self._client, None, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- threads and errors ---------------------------------------------------------------
    def _deadline(self) -> float:
        return self.settings.sync_timeout

    def _too_slow(self, what: str, deadline: float) -> str:
        return f"{self.shown}: could not {what} within {deadline:g} s (sync_timeout)"

    def _translate(self, fn: Callable[..., T], *args: Any) -> T:
        """Run FN, turning the library's errors into SourceError messages."""
        try:
            return fn(*args)
        except (SourceError, CursorExpired):
            raise
        except OutboundRefused as exc:
            self._calendar = None
            raise SourceError(refused_message(exc)) from None
        except LookupFailed as exc:
            raise SourceError(f"cannot reach {self.shown}: {exc}") from None
        except dav_error.AuthorizationError as exc:
            self._calendar = None
            who = f" as {self.settings.username!r}" if self.settings.username else ""
            reason = _reason(exc) if exc.reason else "Unauthorized"
            if "forbidden" in reason.lower():
                raise SourceError(
                    f"{self.shown} refused access{who} ({reason}): "
                    "this user may not read (or write) that calendar"
                ) from None
            raise SourceError(
                f"{self.shown} refused the login{who} ({reason}): check username and password"
            ) from None
        except dav_error.NotFoundError:
            self._calendar = None
            raise SourceError(
                f"{self.shown}: no calendar there (404 Not Found): check the URL"
            ) from None
        except dav_error.DAVError as exc:
            self._calendar = None
            raise SourceError(f"{self.shown}: the CalDAV server refused: {_reason(exc)}") from None
        except dav_http.exceptions.Timeout:
            raise SourceError(
                f"{self.shown} did not answer within {self.settings.timeout:g} s"
            ) from None
        except (dav_http.exceptions.RequestException, OSError) as exc:
            raise SourceError(f"cannot reach {self.shown}: {_reason(exc)}") from None

    # -- connecting -----------------------------------------------------------------------
    def _dav(self) -> DAVClient:
        if self._client is None:
            self._client = DAVClient(
                url=self.settings.url,
                username=self.settings.username,
                password=self._password,
                timeout=max(1, round(self.settings.timeout)),
                ssl_verify_cert=self.settings.verify_tls,
                enable_rfc6764=False,
            )
            # Its own session would resolve names itself: every connection (redirects
            # too) must go to an address the outbound guard checked.
            _filter_library_logs()
            self._client.session.close()
            self._client.session = guarded_session(
                Guard(allow_private=self.settings.private_ok, timeout=self.settings.timeout)
            )
        return self._client

    def _calendar_here(self) -> DavCalendar:
        if self._calendar is not None:
            return self._calendar
        client = self._dav()
        if self.settings.calendar is None:
            candidate = client.calendar(url=self.settings.url)
            kinds = candidate.get_property(dav.ResourceType()) or []
            if _CALENDAR_TYPE in kinds:
                self._calendar = candidate
                return candidate
        self._calendar = self._find_calendar(client)
        return self._calendar

    def _find_calendar(self, client: DAVClient) -> DavCalendar:
        """The calendar named by the settings among the principal's calendars."""
        calendars = client.principal().calendars()
        wanted = self.settings.calendar
        names = []
        for calendar in calendars:
            name = calendar.get_display_name() or ""
            last = _path(calendar.url).rstrip("/").rsplit("/", 1)[-1]
            names.append(name or last)
            if wanted is not None and wanted.casefold() in (name.casefold(), last.casefold()):
                return calendar
        if wanted is None and len(calendars) == 1:
            return calendars[0]
        known = ", ".join(repr(n) for n in names) or "none"
        if wanted is None:
            raise SourceError(
                f"{self.shown} is not a calendar: set 'calendar' to one of its calendars ({known})"
            )
        raise SourceError(f"{self.shown} has no calendar named {wanted!r} (calendars: {known})")

    # -- syncing --------------------------------------------------------------------------
    def _sync(self, window: SyncWindow, state: _State | None) -> SyncResult:
        calendar = self._calendar_here()
        if state is None or state.token is None or state.no_sync or window.start < state.start:
            return self._full(calendar, window, no_sync=state.no_sync if state else False)
        try:
            changes = _done(
                calendar.objects_by_sync_token(
                    state.token, load_objects=False, disable_fallback=True
                )
            )
        except dav_error.DAVError as exc:
            if _VALID_SYNC_TOKEN in getattr(exc, "preconditions", []):
                raise CursorExpired(
                    f"{self.shown} no longer knows the sync token: a full sync is needed"
                ) from None
            if isinstance(exc, dav_error.AuthorizationError | dav_error.NotFoundError):
                raise
            log.warning(
                "%s: sync-collection failed (%s); listing the whole window from now on",
                self.shown,
                _reason(exc),
            )
            return self._full(calendar, window, no_sync=True)

        deleted = {_path(url) for url in changes.deleted_urls}
        wanted = [obj.url for obj in changes if _path(obj.url) not in deleted]
        touched = {resource.path: resource for resource in self._fetch(calendar, wanted)}
        # Changed, then deleted before we fetched it.
        deleted |= {_path(url) for url in wanted} - touched.keys()
        part = window_slice(window, state.until)
        if part is not None:
            # Unchanged resources whose occurrences only now enter the window.
            for resource in self._list(calendar, part):
                touched.setdefault(resource.path, resource)
        return self._delta(window, state, changes.sync_token, touched, deleted)

    def _full(self, calendar: DavCalendar, window: SyncWindow, *, no_sync: bool) -> SyncResult:
        token = None if no_sync else self._sync_token(calendar)
        events: list[CalendarEvent] = []
        warnings: list[str] = []
        seen: dict[str, list[tuple[str, str, float]]] = {}
        for resource in self._list(calendar, window):
            found, problems = self._expand(resource, window)
            events.extend(found)
            warnings.extend(problems)
            if found:
                seen[resource.path] = [_entry(e) for e in found]
        events.sort(key=lambda e: (e.start, e.uid, e.occurrence))
        state = _State(token, window.start, window.end, seen, no_sync=no_sync or token is None)
        return SyncResult(events=events, full=True, cursor=state.encode(), warnings=warnings)

    def _delta(
        self,
        window: SyncWindow,
        state: _State,
        token: str | None,
        touched: Mapping[str, _Resource],
        deleted: Iterable[str],
    ) -> SyncResult:
        events: list[CalendarEvent] = []
        warnings: list[str] = []
        seen = dict(state.seen)
        before: list[tuple[str, str, float]] = []
        deleted_uids: set[str] = set()
        for path in deleted:
            entries = seen.pop(path, [])
            before.extend(entries)
            deleted_uids.update(uid for uid, _, _ in entries)
        for path, resource in touched.items():
            before.extend(seen.pop(path, []))
            found, problems = self._expand(resource, window)
            events.extend(found)
            warnings.extend(problems)
            if found:
                seen[path] = [_entry(e) for e in found]

        # A deleted resource takes its whole UID along (unless the UID lives on in another
        # resource: the hub must not drop what this delta lists). Otherwise only occurrences
        # still ahead are named: one that ended before the window starts is past, not removed.
        horizon = window.start.timestamp()
        now_keys = {e.key for e in events}
        gone_uids = deleted_uids - {e.uid for e in events}
        removed = [Removed(uid, None) for uid in sorted(gone_uids)]
        removed += [
            Removed(uid, occ)
            for uid, occ, end in sorted(set(before))
            if uid not in gone_uids and (uid, occ) not in now_keys and end > horizon
        ]
        seen = {
            path: kept
            for path, entries in seen.items()
            if (kept := [entry for entry in entries if entry[2] > horizon])
        }
        events.sort(key=lambda e: (e.start, e.uid, e.occurrence))
        until = max(state.until, window.end)
        new_state = _State(token or state.token, window.start, until, seen)
        return SyncResult(
            events=events,
            removed=removed,
            full=False,
            cursor=new_state.encode(),
            warnings=warnings,
        )

    def _sync_token(self, calendar: DavCalendar) -> str | None:
        """The collection's current DAV:sync-token (None when the server has none)."""
        try:
            token = calendar.get_property(dav.SyncToken())
        except dav_error.DAVError as exc:
            if isinstance(exc, dav_error.AuthorizationError | dav_error.NotFoundError):
                raise
            return None
        return str(token) if token else None

    def _list(self, calendar: DavCalendar, window: SyncWindow) -> list[_Resource]:
        """The event resources with an occurrence in WINDOW (a time-range REPORT)."""
        found: list[Any] = _done(
            calendar.search(
                start=window.start - _PAD,
                end=window.end + _PAD,
                event=True,
                expand=False,
                post_filter=False,
            )
        )
        return [
            _Resource(_path(obj.url), str(obj.data), obj.etag or "") for obj in found if obj.data
        ]

    def _fetch(self, calendar: DavCalendar, urls: list[Any]) -> list[_Resource]:
        """The resources at URLS, in one calendar-multiget REPORT where the server can."""
        if not urls:
            return []
        try:
            found: list[Any] = _done(calendar.multiget(urls))
        except dav_error.DAVError as exc:
            if isinstance(exc, dav_error.AuthorizationError):
                raise
            log.info("%s: calendar-multiget failed (%s); one GET each", self.shown, _reason(exc))
            found = []
            for url in urls:
                obj = _done(calendar.event_by_url(url))
                try:
                    _done(obj.load())
                except dav_error.NotFoundError:
                    continue
                found.append(obj)
        return [
            _Resource(_path(obj.url), str(obj.data), obj.etag or "") for obj in found if obj.data
        ]

    def _expand(
        self, resource: _Resource, window: SyncWindow
    ) -> tuple[list[CalendarEvent], list[str]]:
        where = f"{self.shown} {resource.path.rsplit('/', 1)[-1]}"
        try:
            cal = read_calendar(resource.data or "", where)
        except SourceError as exc:
            # One unreadable resource must not stop the calendar.
            return [], [f"{exc} (skipped)"]
        return expand_events(
            cal,
            window,
            where=where,
            default_timezone=self.settings.timezone,
            etag=resource.etag,
            raw={"href": resource.path},
            data=resource.data,
        )

    # -- annotating -----------------------------------------------------------------------
    def _write_note(self, event: CalendarEvent, note: str) -> bool:
        calendar = self._calendar_here()
        client = self._dav()
        note = note.strip()
        if not note:
            return True
        href = event.raw.get("href") if event.raw else None
        for _ in range(_ANNOTATE_ATTEMPTS):
            url, data, etag = self._load(calendar, href, event.uid)
            try:
                if data is None:
                    raise _Gone(f"{event.uid!r} is not in the calendar any more")
                changed = _with_note(data, event, note, self.settings.timezone)
            except _Gone as exc:
                log.warning("%s: note not written: %s", self.shown, exc)
                return False
            if changed is None:
                return True  # already there (a retry after a lost answer)
            headers = {"Content-Type": "text/calendar; charset=utf-8"}
            if etag:
                headers["If-Match"] = etag
            response = client.put(url, changed, headers)
            if response.status in (200, 201, 204):
                return True
            if response.status == 412:
                href = url  # changed meanwhile: read it again and redo the edit
                continue
            raise SourceError(
                f"{self.shown}: the server refused to save the note on {event.uid!r} "
                f"({response.status} {response.reason})"
            )
        raise SourceError(
            f"{self.shown}: {event.uid!r} kept changing while the note was being saved"
        )

    def _load(
        self, calendar: DavCalendar, href: str | None, uid: str
    ) -> tuple[str, str | None, str]:
        """(url, text or None when gone, etag) of the resource holding UID."""
        if href and calendar.url is not None:
            url = str(calendar.url.join(href))
            try:
                response = self._dav().request(url, "GET")
            except dav_error.NotFoundError:
                response = None
            if response is not None and response.status == 200:
                body = response.raw
                text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
                if uid in text:
                    return url, text, response.headers.get("ETag", "")
        try:
            obj = _done(calendar.get_object_by_uid(uid))
            _done(obj.load())
        except dav_error.NotFoundError:
            return "", None, ""
        return str(obj.url), str(obj.data), obj.etag or ""


# ---- editing --------------------------------------------------------------------------------

# Properties that make a VEVENT a series; an override created for one occurrence drops them.
_SERIES_ONLY = ("RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID", "DTSTART", "DTEND")


def _with_note(data: str, event: CalendarEvent, note: str, default_tz: str | None) -> str | None:
    """DATA with NOTE appended to the occurrence's DESCRIPTION (None: already there)."""
    cal = icalendar.Calendar.from_ical(data)
    tz = ZoneInfo(calendar_timezone(cal, default_tz))
    vevents = [
        c for c in cal.subcomponents if c.name == "VEVENT" and str(c.get("UID")) == event.uid
    ]
    if not vevents:
        raise _Gone(f"the resource no longer holds {event.uid!r}")
    target = None
    master = next((c for c in vevents if "RECURRENCE-ID" not in c), None)
    if not event.occurrence:
        target = master or vevents[0]
    else:
        for component in vevents:
            if "RECURRENCE-ID" in component:
                original = component.decoded("RECURRENCE-ID")
                if _key(original, tz) == event.occurrence:
                    target = component
                    break
        if target is None:
            if master is None or not _has_occurrence(cal, event, tz, default_tz):
                raise _Gone(f"{event.uid!r} has no occurrence {event.occurrence} any more")
            target = _override(master, event, tz)
            cal.add_component(target)

    description = str(target.get("DESCRIPTION", ""))
    if note in description.splitlines():
        return None
    target.pop("DESCRIPTION", None)
    target.add("DESCRIPTION", f"{description.rstrip()}\n{note}" if description.strip() else note)
    now = datetime.now(UTC).replace(microsecond=0)
    for prop in ("DTSTAMP", "LAST-MODIFIED"):
        target.pop(prop, None)
        target.add(prop, now)
    return str(cal.to_ical().decode("utf-8"))


class _Gone(Exception):
    """The event or occurrence to annotate no longer exists."""


def _has_occurrence(
    cal: icalendar.Calendar, event: CalendarEvent, tz: ZoneInfo, default_tz: str | None
) -> bool:
    """Whether the series in CAL still has EVENT's occurrence (not excluded meanwhile)."""
    key = event.occurrence
    try:
        if "T" in key:
            original = datetime.fromisoformat(key.replace("Z", "+00:00"))
        else:
            original = datetime.combine(date.fromisoformat(key), datetime.min.time(), tz)
    except ValueError:
        return False
    around = SyncWindow(original - timedelta(days=1), original + timedelta(days=1))
    found, _ = expand_events(cal, around, where="", default_timezone=default_tz)
    return any(e.key == event.key for e in found)


def _key(value: date | datetime, tz: ZoneInfo) -> str:
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return occurrence_id(value)


def _override(
    master: icalendar.Component, event: CalendarEvent, tz: ZoneInfo
) -> icalendar.Component:
    """A RECURRENCE-ID override of MASTER for EVENT's occurrence (not moved: no override yet)."""
    start_prop = master["DTSTART"]
    master_start = master.decoded("DTSTART")
    tzid = start_prop.params.get("TZID")
    start: date | datetime
    if not isinstance(master_start, datetime):
        start = date.fromisoformat(event.occurrence)
    elif master_start.tzinfo is None:
        start = event.start.astimezone(tz).replace(tzinfo=None)
    else:
        start = event.start.astimezone(master_start.tzinfo)
    duration = None
    if "DTEND" in master:
        duration = master.decoded("DTEND") - master_start
    override = icalendar.Event()
    for name, value in master.items():
        if name not in _SERIES_ONLY:
            override[name] = value
    # Keep the master's TZID spelling (an Outlook name refers to the resource's VTIMEZONE).
    params = {"TZID": str(tzid)} if tzid and isinstance(start, datetime) else {}
    for name in ("RECURRENCE-ID", "DTSTART"):
        override.add(name, start, parameters=dict(params))
    if duration is not None and "DURATION" not in override:
        override.add("DTEND", start + duration, parameters=dict(params))
    return override


def _done(value: T | Coroutine[Any, Any, T]) -> T:
    """VALUE from a caldav call (typed as sync-or-async: ours is always the sync client)."""
    if isinstance(value, Coroutine):
        value.close()
        raise TypeError("the caldav client is asynchronous; a synchronous one is expected")
    return value


def _reason(exc: BaseException) -> str:
    """EXC in a few words for messages and the log: for a server's refusal its status line
    only, never the body it sent (the library puts it in the reason)."""
    text = str(exc)
    reason = getattr(exc, "reason", None)
    if isinstance(exc, dav_error.DAVError) and reason:
        text = str(reason).split("\n", 1)[0]
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
        if body and body.strip():
            text = text.split(body.strip()[:20], 1)[0].rstrip(" -")
        if text in ("", "no reason") and getattr(exc, "status", None):
            text = f"HTTP {exc.status}"
    text = " ".join(text.split())
    return (text[:200] + "…" if len(text) > 200 else text) or type(exc).__name__


class _StatusLinesOnly(logging.Filter):
    """The caldav library logs the server's answers (a body it could not parse, exceptions
    whose text ends with the body): of its records keep the first line, without traceback,
    so no response body reaches the log. Other records pass untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.pathname.startswith(_CALDAV_DIR):
            return True
        message = record.getMessage().split("\n", 1)[0]
        record.msg = message[:300]
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_CALDAV_DIR = str(Path(caldav.__file__).parent)
_LOG_FILTER = _StatusLinesOnly()


def _filter_library_logs() -> None:
    """Put the filter on the library's loggers (filters do not pass on to child loggers, and
    the library also logs on the root logger); again when it made new ones."""
    for name in [
        "",
        "caldav",
        *(n for n in logging.root.manager.loggerDict if n.startswith("caldav.")),
    ]:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)


_filter_library_logs()
