"""ICS calendars: any iCalendar (RFC 5545) file or URL, read-only.

Most calendar apps publish one (Google's "secret address in iCal format", Outlook's
"publish calendar", Nextcloud's export links), so this is the catch-all source. Each sync
fetches the whole file (a conditional GET: an unchanged file costs a 304), parses it with
``icalendar`` and expands recurrences with ``recurring-ical-events``.

The expansion (:func:`read_calendar`, :func:`expand_events`) is shared with the CalDAV
source, which gets the same iCalendar objects one resource at a time. What it does:

* Occurrence keys: ``occurrence_id(original start)`` for every occurrence of a recurring
  event (RRULE, RDATE or a RECURRENCE-ID override), ``""`` for a single event. A moved
  occurrence keeps the key of its original start (its RECURRENCE-ID) and gets the new start.
* Time zones: TZID with or without a VTIMEZONE (Windows names such as "Romance Standard
  Time", from Outlook, map to IANA names); ``X-WR-TIMEZONE`` (Google) is the calendar's
  zone: UTC times of recurring events are rebased on it, so "09:00 every Monday" stays 09:00
  local across DST; floating times and all-day dates are in the calendar's zone (the
  ``timezone`` setting when the file names none, else UTC).
* A broken event (bad DTSTART, RRULE, EXDATE...) is skipped with a warning naming its UID
  and line; the other events go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
import icalendar
import recurring_ical_events
from pydantic import field_validator

from connectors.calendar.base import CalendarSourceBase, short
from hub.errors import SourceError
from hub.outbound import Guard, LookupFailed, OutboundRefused, guarded_async_client
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    CalendarSettings,
    EventStatus,
    SourceContext,
    StateFile,
    SyncResult,
    SyncWindow,
    Timeout,
    ZoneSetting,
    occurrence_id,
    zone_name,
)

log = logging.getLogger("smshub.calendar.ics")

# Expansion looks this much beyond the window, then filters exactly: floating times and
# all-day dates are compared in the calendar's zone only after expansion.
_PAD = timedelta(days=1)
# Properties without which an event cannot be placed in time: an error in one of them
# skips the event; an error elsewhere (a garbled X- line) is only reported.
_TIME_PROPERTIES = frozenset(
    {"DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID"}
)
_STATUS = {
    "CANCELLED": EventStatus.CANCELLED,
    "TENTATIVE": EventStatus.TENTATIVE,
}
_USER_AGENT = "smshub/0.1 (calendar reminders)"


# ---- time zones ---------------------------------------------------------------------------


def calendar_timezone(cal: icalendar.Calendar, default: str | None = None) -> str:
    """The calendar's zone: its X-WR-TIMEZONE, else DEFAULT, else its only VTIMEZONE, else UTC.

    Outlook names no calendar zone but defines exactly the one its events use.
    """
    declared = zone_name(str(cal.get("X-WR-TIMEZONE", "")))
    if declared or default:
        return declared or default or "UTC"
    defined = {zone_name(str(tz.get("TZID", ""))) for tz in cal.walk("VTIMEZONE")}
    only = defined.pop() if len(defined) == 1 else None
    return only or "UTC"


def _tz_of(value: datetime, tzid: str | None) -> str | None:
    """The IANA name of an aware datetime's zone (from its tzinfo or its TZID), if any."""
    key = getattr(value.tzinfo, "key", None)
    if isinstance(key, str) and key not in ("UTC", "Etc/UTC"):
        return key
    return zone_name(tzid) if tzid else None


def _aware(value: date | datetime, tz: tzinfo) -> datetime:
    """VALUE as an aware datetime: dates at midnight and floating times in TZ."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), tz)
    if value.tzinfo is None:
        return value.replace(tzinfo=tz)
    return value


# ---- parsing ------------------------------------------------------------------------------


def read_calendar(data: bytes | str, where: str, *, quote: bool = True) -> icalendar.Calendar:
    """Parse DATA (a whole VCALENDAR); SourceError saying why it is not one (quoting its
    first line unless QUOTE is false: a server's answer is never repeated to the user)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    raw = raw.removeprefix(b"\xef\xbb\xbf").strip()
    if not raw:
        raise SourceError(f"{where} is not an ICS calendar: it is empty")
    if not raw[:15].upper().startswith(b"BEGIN:VCALENDAR"):
        if not quote:
            raise SourceError(
                f"{where} is not an ICS calendar: it does not start with BEGIN:VCALENDAR"
            )
        first = raw.splitlines()[0][:60].decode("utf-8", "replace")
        raise SourceError(
            f"{where} is not an ICS calendar: it starts with {first!r} instead of BEGIN:VCALENDAR"
        )
    try:
        found = icalendar.Calendar.from_ical(raw, multiple=True)
    except ValueError as exc:
        raise SourceError(f"{where} is not an ICS calendar: {short(str(exc), 160)}") from None
    calendars = [c for c in found if c.name == "VCALENDAR"]
    if not calendars:
        cut = b"END:VCALENDAR" not in raw.upper()
        reason = (
            "it ends without END:VCALENDAR (cut short?)"
            if cut
            else "its BEGIN: and END: lines do not match (a component left open?)"
        )
        raise SourceError(f"{where} is not an ICS calendar: {reason}")
    cal = calendars[0]
    # Some feeds concatenate several VCALENDARs: read them as one.
    for extra in calendars[1:]:
        for component in extra.subcomponents:
            cal.add_component(component)
    return cal


def _vevent_lines(data: bytes | str | None) -> list[int]:
    """Line numbers of the BEGIN:VEVENT lines of DATA, in order."""
    if data is None:
        return []
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [
        number
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip().upper() == "BEGIN:VEVENT"
    ]


def _problem(event: icalendar.Component) -> tuple[str | None, list[str]]:
    """(why EVENT cannot be used or None, minor problems worth a warning)."""
    minor = []
    for prop, message in getattr(event, "errors", []):
        if prop in _TIME_PROPERTIES:
            return f"{prop}: {short(message, 160)}", []
        minor.append(f"{prop or 'a line'}: {short(message, 160)}")
    if "DTSTART" not in event:
        return "it has no DTSTART", []
    for prop in _TIME_PROPERTIES:
        if prop in event:
            try:
                event.decoded(prop)
            except Exception as exc:  # icalendar raises many kinds on bad values
                return f"{prop}: {short(str(exc), 160)}", []
    return None, minor


def _derived_uid(event: icalendar.Component, taken: Mapping[str, object]) -> str:
    """A stable identity for an event without UID (real published files lack them): a
    hash of its DTSTART and SUMMARY as written, numbered when two events share both."""
    start = event.get("DTSTART")
    seed = f"{start.to_ical().decode() if start is not None else ''}\n{event.get('SUMMARY', '')}"
    base = f"derived-{hashlib.sha256(seed.encode('utf-8', 'replace')).hexdigest()[:20]}"
    uid, number = base, 1
    while uid in taken:
        number += 1
        uid = f"{base}-{number}"
    return uid


def _label(uid: str | None, line: int | None) -> str:
    """How a warning names an event: "event 'UID' (line N)"."""
    name = f"event {uid!r}" if uid else "event without UID"
    return f"{name} (line {line})" if line else name


def _unknown_tzids(defined: set[str], event: icalendar.Component) -> set[str]:
    """TZIDs EVENT uses that neither a VTIMEZONE (DEFINED) nor IANA/Windows names define."""
    unknown = set()
    for prop in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        value = event.get(prop)
        tzid = getattr(value, "params", {}).get("TZID") if value is not None else None
        if tzid and tzid not in defined and zone_name(tzid) is None:
            unknown.add(str(tzid))
    return unknown


def expand_events(
    cal: icalendar.Calendar,
    window: SyncWindow,
    *,
    where: str,
    default_timezone: str | None = None,
    etag: str | None = None,
    raw: Mapping[str, Any] | None = None,
    data: bytes | str | None = None,
) -> tuple[list[CalendarEvent], list[str]]:
    """Every occurrence of CAL's events that overlaps WINDOW, and warnings about bad events.

    ETAG is the version marker given to every event (a CalDAV resource's ETag); without
    it each occurrence gets a hash of its content. DATA (the text CAL was read from) lets
    warnings give line numbers.
    """
    tz_name = calendar_timezone(cal, default_timezone)
    tz = ZoneInfo(tz_name)
    warnings: list[str] = []
    lines = _vevent_lines(data)
    vevents = list(cal.walk("VEVENT"))
    if len(lines) != len(vevents):
        lines = []

    timezones = list(cal.walk("VTIMEZONE"))
    defined = {str(tz.get("TZID", "")) for tz in timezones}
    groups: dict[str, list[icalendar.Component]] = {}
    first_line: dict[str, int | None] = {}
    for index, event in enumerate(vevents):
        line = lines[index] if lines else None
        uid = str(event.get("UID", "")).strip() or None
        problem, minor = _problem(event)
        if problem is not None:
            warnings.append(f"{where}: {_label(uid, line)} skipped: {problem}")
            continue
        if uid is None:
            uid = _derived_uid(event, groups)
            warnings.append(
                f"{where}: {_label(None, line)}: identified as {uid!r} (from its start and "
                "title; a moved event gets a new reminder, the old one is cancelled)"
            )
        for text in minor:
            warnings.append(f"{where}: {_label(uid, line)}: ignored {text}")
        for tzid in sorted(_unknown_tzids(defined, event)):
            warnings.append(
                f"{where}: {_label(uid, line)}: unknown time zone {tzid!r}, read as {tz_name}"
            )
        groups.setdefault(uid, []).append(event)
        first_line.setdefault(uid, line)

    events: list[CalendarEvent] = []
    for uid, components in groups.items():
        try:
            events.extend(
                _expand_one(uid, components, timezones, cal, window, tz_name, tz, etag, raw)
            )
        except Exception as exc:  # one bad series must not stop the others
            warnings.append(
                f"{where}: {_label(uid, first_line[uid])} skipped: {short(str(exc), 160) or exc!r}"
            )
    events.sort(key=lambda e: (e.start, e.uid, e.occurrence))
    return events, warnings


def _expand_one(
    uid: str,
    components: Sequence[icalendar.Component],
    timezones: Sequence[icalendar.Component],
    cal: icalendar.Calendar,
    window: SyncWindow,
    tz_name: str,
    tz: ZoneInfo,
    etag: str | None,
    raw: Mapping[str, Any] | None,
) -> list[CalendarEvent]:
    """The occurrences of one UID (a master, its overrides) overlapping WINDOW."""
    # A calendar of its own per UID: an error in one series cannot hide the others.
    single = icalendar.Calendar()
    if "X-WR-TIMEZONE" in cal:
        single["X-WR-TIMEZONE"] = cal["X-WR-TIMEZONE"]
    for component in (*timezones, *components):
        single.add_component(component)
    recurring = any(
        key in component for component in components for key in ("RRULE", "RDATE", "RECURRENCE-ID")
    )
    found = []
    for occ in recurring_ical_events.of(single).between(window.start - _PAD, window.end + _PAD):
        event = _to_event(uid, occ, recurring, tz_name, tz, etag, raw)
        end = event.end if event.end is not None and event.end > event.start else None
        overlaps = (
            end > window.start and event.start < window.end
            if end is not None
            else window.start <= event.start < window.end
        )
        if overlaps:
            found.append(event)
    return found


def _to_event(
    uid: str,
    occ: icalendar.Component,
    recurring: bool,
    tz_name: str,
    tz: ZoneInfo,
    etag: str | None,
    raw: Mapping[str, Any] | None,
) -> CalendarEvent:
    start_raw = occ.decoded("DTSTART")
    all_day = not isinstance(start_raw, datetime)
    end_raw = _raw_end(occ, start_raw, all_day)
    if all_day:
        event_tz = tz_name
    else:
        event_tz = _tz_of(_aware(start_raw, tz), occ["DTSTART"].params.get("TZID")) or tz_name
    zone = ZoneInfo(event_tz)
    start = _aware(start_raw, tz).astimezone(zone)
    end = _aware(end_raw, tz).astimezone(zone) if end_raw is not None else None
    if end is not None and end < start:
        end = start
    attendees = _attendees(occ)
    status = _STATUS.get(str(occ.get("STATUS", "")).upper(), EventStatus.CONFIRMED)
    title = str(occ.get("SUMMARY", "")).strip()
    location = str(occ.get("LOCATION", "")).strip()
    description = str(occ.get("DESCRIPTION", "")).strip()
    if etag is None:
        # DTSTAMP is left out: many servers set it to the export time, so it always changes.
        digest = hashlib.sha256(
            repr(
                (start.isoformat(), end and end.isoformat(), title, location, description)
                + (status.value, attendees, str(occ.get("SEQUENCE", "")))
            ).encode()
        )
        etag = digest.hexdigest()[:16]
    return CalendarEvent(
        uid=uid,
        occurrence=_occurrence(occ, start_raw, tz) if recurring else "",
        start=start,
        end=end,
        timezone=event_tz,
        all_day=all_day,
        title=title,
        location=location,
        description=description,
        attendees=attendees,
        status=status,
        etag=etag,
        raw=dict(raw or {}),
    )


def _raw_end(occ: icalendar.Component, start_raw: Any, all_day: bool) -> Any:
    """DTEND as given, else DTSTART + DURATION, else the day's end (all-day) or None."""
    if "DTEND" in occ:
        return occ.decoded("DTEND")
    if "DURATION" in occ:
        return start_raw + occ.decoded("DURATION")
    return start_raw + timedelta(days=1) if all_day else None


def _occurrence(occ: icalendar.Component, start_raw: Any, tz: ZoneInfo) -> str:
    """The occurrence key of one instance of a series: its RECURRENCE-ID, else its start."""
    original = occ.decoded("RECURRENCE-ID") if "RECURRENCE-ID" in occ else start_raw
    # All-day keys are dates; timed keys are UTC instants (floating ones placed in TZ).
    return occurrence_id(original if not isinstance(original, datetime) else _aware(original, tz))


def _attendees(occ: icalendar.Component) -> tuple[Attendee, ...]:
    # The organizer (the practice) is often listed as an attendee too: not a person to remind.
    organizer = _attendee(occ["ORGANIZER"]).email if "ORGANIZER" in occ else None
    return tuple(
        a
        for a in (_attendee(v) for v in _as_list(occ.get("ATTENDEE")))
        if not (organizer and a.email and a.email.lower() == organizer.lower())
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _attendee(value: Any) -> Attendee:
    address = str(value).strip()
    email = re.sub(r"^mailto:", "", address, flags=re.IGNORECASE) or None
    params = getattr(value, "params", {})
    name = str(params.get("CN", "")).strip() or None
    return Attendee(email=email if email and "@" in email else None, name=name)


def window_slice(window: SyncWindow, done_until: datetime) -> SyncWindow | None:
    """The part of WINDOW after DONE_UNTIL (occurrences seen since), or None."""
    if window.end <= done_until:
        return None
    return SyncWindow(max(window.start, done_until), window.end)


# ---- the source ---------------------------------------------------------------------------


class IcsSettings(CalendarSettings):
    type: Literal["ics"] = "ics"
    # http(s):// or webcal:// URL, file:// URL or a file path.
    url: str
    # HTTP basic auth, for servers that want it (the password from the environment or a file).
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    # Seconds to wait for the server: to connect, and between two reads.
    timeout: Timeout = 30.0
    # Zone of floating times and all-day events when the file names none (X-WR-TIMEZONE).
    timezone: ZoneSetting = None
    # A larger answer is refused (a misconfigured URL serving something huge).
    max_bytes: int = 50_000_000
    # Let the URL reach the hub's own machine or network (loopback, private addresses...):
    # the administrator's choice (`smshub calendars add --allow-private`), never the console's.
    private_ok: bool = False

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("give the calendar's URL or file path")
        scheme = urlsplit(value).scheme.lower()
        if scheme not in ("", "http", "https", "webcal", "webcals", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r}: use http(s)://, or a file path")
        return value


def refused_message(exc: OutboundRefused) -> str:
    """What a sync refused by the outbound guard says (shared with the CalDAV source)."""
    return (
        f"calendar URL refused: {exc.reason}; only the hub administrator can allow "
        "private addresses (--allow-private of `smshub calendars add` / `calendar preview`)"
    )


def display_url(url: str) -> str:
    """URL for messages: without user:password@ and query string (they may hold secrets)."""
    parts = urlsplit(url)
    if not parts.scheme or parts.scheme == "file":
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    query = "…" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def _location(url: str) -> tuple[str, Path | None]:
    """(the URL to fetch, None) for a calendar on a server; (URL, the file) for a local one."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("webcal", "webcals"):
        # webcal:// is https:// for "subscribe" links (Google, iCloud, Outlook).
        return "https" + url[url.index(":") :], None
    if scheme == "file":
        return url, Path(unquote(urlsplit(url).path))
    if scheme not in ("http", "https"):
        return url, Path(url).expanduser()
    return url, None


def _cache_file(url: str, ctx: SourceContext) -> Path:
    """Where the last file fetched from URL is kept: a 304 tells us it is unchanged, but
    occurrences that enter the window as time passes must still be read from it."""
    return ctx.state_path(url, suffix=".ics")


@dataclass
class _Fetched:
    """The file's content, or None when the server said it has not changed (304)."""

    body: bytes | None
    etag: str | None = None
    last_modified: str | None = None


class IcsSource(CalendarSourceBase[IcsSettings]):
    """Implements hub.ports.calendar.CalendarSource for an ICS file or URL (read-only)."""

    settings_model: ClassVar[type[CalendarSettings]] = IcsSettings

    def __init__(self, settings: IcsSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self.url, self._path = _location(settings.url)
        self.shown = str(self._path) if self._path is not None else display_url(self.url)
        self._password = ctx.secret(settings, "password")
        self._cache = _cache_file(self.url, ctx)
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def state_files(cls, settings: IcsSettings, ctx: SourceContext) -> list[StateFile]:
        """The cached copy of a calendar read over HTTP (nothing for a local file)."""
        url, path = _location(settings.url)
        if path is not None:
            return []
        cache = _cache_file(url, ctx)
        what = "cached copy of the calendar"
        return [StateFile(cache, what), StateFile(cache.with_suffix(".tmp"), what)]

    # -- protocol -------------------------------------------------------------------------
    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        """The whole calendar (full=True) unless the file is unchanged since CURSOR.

        When unchanged, the result is a delta holding only the occurrences that entered the
        window since the cursor's sync (none when the window did not move).
        """
        previous = _read_cursor(cursor)
        if self._path is not None:
            body = await asyncio.to_thread(self._read_file)
            fetched = _Fetched(body)
        else:
            cached = await asyncio.to_thread(self._read_cache, previous)
            fetched = await self._fetch(previous if cached is not None else None)
            if fetched.body is None:
                fetched = _Fetched(cached, previous.get("etag"), previous.get("last_modified"))
        assert fetched.body is not None
        digest = hashlib.sha256(fetched.body).hexdigest()

        unchanged = bool(previous) and previous.get("sha256") == digest
        done_until = _parse_time(previous.get("until")) if unchanged else None
        done_from = _parse_time(previous.get("from")) if unchanged else None
        if done_until is not None and done_from is not None and window.start >= done_from:
            part = window_slice(window, done_until)
            events: list[CalendarEvent] = []
            warnings: list[str] = []
            if part is not None:
                events, warnings = await asyncio.to_thread(self._expand, fetched.body, part)
            until = max(done_until, window.end)
            return SyncResult(
                events=events,
                full=False,
                cursor=self._cursor(fetched, digest, window.start, until),
                warnings=warnings,
            )

        events, warnings = await asyncio.to_thread(self._expand, fetched.body, window)
        if self._path is None:
            await asyncio.to_thread(self._write_cache, fetched.body)
        return SyncResult(
            events=events,
            full=True,
            cursor=self._cursor(fetched, digest, window.start, window.end),
            warnings=warnings,
        )

    @property
    def read_only(self) -> bool:
        """An ICS file cannot be written back."""
        return True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- reading --------------------------------------------------------------------------
    def _expand(self, body: bytes, window: SyncWindow) -> tuple[list[CalendarEvent], list[str]]:
        cal = read_calendar(body, self.shown, quote=self._path is not None)
        return expand_events(
            cal,
            window,
            where=self.shown,
            default_timezone=self.settings.timezone,
            data=body,
        )

    def _read_file(self) -> bytes:
        assert self._path is not None
        try:
            size = self._path.stat().st_size
            if size > self.settings.max_bytes:
                raise SourceError(
                    f"{self.shown} is {size} bytes, more than max_bytes "
                    f"({self.settings.max_bytes}): is it the right file?"
                )
            return self._path.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {self.shown}: {exc.strerror or exc}") from None

    def _read_cache(self, previous: Mapping[str, Any]) -> bytes | None:
        """The cached last file when it is the one CURSOR was made from, else None."""
        if not previous.get("sha256"):
            return None
        try:
            body = self._cache.read_bytes()
        except OSError:
            return None
        return body if hashlib.sha256(body).hexdigest() == previous["sha256"] else None

    def _write_cache(self, body: bytes) -> None:
        try:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache.with_suffix(".tmp")
            tmp.write_bytes(body)
            os.replace(tmp, self._cache)
        except OSError as exc:
            # Only an optimisation: without it the next sync downloads the file again.
            log.warning("cannot cache %s in %s: %s", self.shown, self._cache, exc)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            auth = (
                httpx.BasicAuth(self.settings.username, self._password or "")
                if self.settings.username
                else None
            )
            # Every connection (redirects too) goes to an address the outbound guard checked.
            self._client = guarded_async_client(
                Guard(allow_private=self.settings.private_ok, timeout=self.settings.timeout),
                auth=auth,
                timeout=httpx.Timeout(self.settings.timeout),
                follow_redirects=True,
                headers={"User-Agent": _USER_AGENT, "Accept": "text/calendar, */*;q=0.5"},
            )
        return self._client

    async def _fetch(self, previous: Mapping[str, Any] | None) -> _Fetched:
        """GET the URL, conditionally when PREVIOUS has validators (and we kept the file)."""
        headers = {}
        if previous:
            if previous.get("etag"):
                headers["If-None-Match"] = previous["etag"]
            if previous.get("last_modified"):
                headers["If-Modified-Since"] = previous["last_modified"]
        limit = self.settings.max_bytes
        try:
            async with self._http().stream("GET", self.url, headers=headers) as response:
                if response.status_code == 304 and headers:
                    return _Fetched(None)
                if response.status_code != 200:
                    raise SourceError(self._status_message(response))
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise SourceError(
                            f"{self.shown} sent more than max_bytes ({limit} bytes): "
                            "is it the right URL?"
                        )
                    chunks.append(chunk)
                body = b"".join(chunks)
                kind = response.headers.get("Content-Type", "")
                if "html" in kind.lower() and not body.lstrip().upper().startswith(b"BEGIN:"):
                    raise SourceError(
                        f"{self.shown} is not an ICS calendar: the server sent a web page "
                        f"({kind}) — a login page or the calendar's page instead of its ICS link?"
                    )
                return _Fetched(
                    body,
                    response.headers.get("ETag"),
                    response.headers.get("Last-Modified"),
                )
        except OutboundRefused as exc:
            raise SourceError(refused_message(exc)) from None
        except LookupFailed as exc:
            raise SourceError(f"cannot fetch {self.shown}: {exc}") from None
        except httpx.TimeoutException:
            raise SourceError(
                f"{self.shown} did not answer within {self.settings.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot fetch {self.shown}: {exc or type(exc).__name__}") from None

    def _status_message(self, response: httpx.Response) -> str:
        status = f"{response.status_code} {response.reason_phrase}".strip()
        code = response.status_code
        if code in (401, 403):
            hint = (
                "check username and password"
                if self.settings.username
                else "the calendar needs a username and password, or its secret address changed"
            )
            return f"{self.shown} refused access ({status}): {hint}"
        if code in (404, 410):
            return f"{self.shown} was not found ({status}): check the URL (was the link reset?)"
        return f"{self.shown} answered {status}"

    def _cursor(self, fetched: _Fetched, digest: str, start: datetime, until: datetime) -> str:
        state = {
            "sha256": digest,
            "from": start.astimezone(UTC).isoformat(),
            "until": until.astimezone(UTC).isoformat(),
        }
        if fetched.etag:
            state["etag"] = fetched.etag
        if fetched.last_modified:
            state["last_modified"] = fetched.last_modified
        return json.dumps(state, sort_keys=True, separators=(",", ":"))


def _read_cursor(cursor: str | None) -> dict[str, Any]:
    """The state saved in CURSOR ({} when there is none or it is not ours: a full sync)."""
    if not cursor:
        return {}
    try:
        state = json.loads(cursor)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
