"""Google Calendar, through the Calendar API v3 and google-api-python-client.

Reading: ``events.list`` with ``singleEvents=true`` (Google expands recurring series into
instances), first over the sync window, then incrementally with the ``nextSyncToken`` of the
last page. Google forbids ``timeMin``/``timeMax`` together with a ``syncToken``, so an
incremental sync sees changes anywhere in the calendar: changes outside the synced range are
reported as removed (the occurrence left the window), and when the window has moved past the
range listed so far, the new slice is listed by time and added.

Keys: ``uid`` is the event's ``iCalUID`` (shared by every instance of a series; the event id
when there is none), ``occurrence`` is ``occurrence_id(originalStartTime)`` for an instance
of a recurring event, ``""`` for a single event. Deleted events come back in a delta with
only their ``id`` (cancelled instances also with ``recurringEventId`` and
``originalStartTime``), so the cursor keeps the id → key map of what was seen.

Auth, one of:

* a service account's JSON key (``service_account_file``), with ``subject`` for domain-wide
  delegation (the account then acts as that user);
* an OAuth "installed app" refresh token (``client_id``, ``client_secret_env``,
  ``refresh_token_env``) obtained once with the consent screen;
* ``anonymous = true`` with ``api_endpoint``: no credentials, for tests against a local
  stand-in only.

The client library is blocking (httplib2): every call runs in a worker thread with a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from types import SimpleNamespace
from typing import Annotated, Any, ClassVar, Literal, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import model_validator

from connectors.calendar.base import ThreadedSource, short
from connectors.calendar.cursor import DeltaState
from hub.errors import CursorExpired, SourceError
from hub.mail.parse import html_to_text
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    CalendarSettings,
    EventStatus,
    NotNegative,
    Removed,
    SourceContext,
    SyncResult,
    SyncWindow,
    between,
    occurrence_id,
    zone_setting,
)

log = logging.getLogger("smshub.calendar.google")

SCOPE = "https://www.googleapis.com/auth/calendar.events"
READ_ONLY_SCOPE = "https://www.googleapis.com/auth/calendar.events.readonly"
TOKEN_URI = "https://oauth2.googleapis.com/token"
# What the client library appends to Google's root URL (from the bundled discovery document).
SERVICE_PATH = "calendar/v3/"
# Reasons Google gives with a 403 that mean "slow down", not "forbidden".
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_STATUS = {"tentative": EventStatus.TENTATIVE, "cancelled": EventStatus.CANCELLED}
_HTML = re.compile(r"<(br|p|div|a|b|i|u|ul|ol|li|span|strong|em)\b[^>]*>", re.IGNORECASE)
# What events.list is asked to send back (a partial response, documented for every Google
# API): every field the mapping, the keys and the cursor read, and nothing else, so that a
# page carries about half the bytes (no htmlLink, creator, organizer, reminders...).
# tests/test_calendar_google_mapping.py checks the mapping reads nothing left out.
LIST_FIELDS = (
    "nextPageToken,nextSyncToken,timeZone,"
    "items(id,iCalUID,status,summary,location,description,etag,updated,recurringEventId,"
    "originalStartTime(date,dateTime),start(date,dateTime,timeZone),end(date,dateTime),"
    "attendees(email,displayName,resource,self,organizer))"
)
# A runaway server (or a bug in ours) must not page forever.
_MAX_PAGES = 10_000


def _zone(name: str | None) -> str | None:
    """NAME if it is a known IANA zone, else None."""
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


class GoogleSettings(CalendarSettings):
    """Settings of a Google calendar (one of three ways to authenticate)."""

    type: Literal["google"] = "google"
    # "primary" (the account's main calendar) or a calendar's ID (Settings → Integrate calendar).
    calendar_id: str = "primary"
    # A service account's JSON key; with `subject`, domain-wide delegation as that user.
    service_account_file: str | None = None
    service_account_env: str | None = None
    subject: str | None = None
    # An OAuth client ("Desktop app") and a refresh token obtained with it.
    client_id: str | None = None
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    refresh_token_env: str | None = None
    refresh_token_file: str | None = None
    # Google's token endpoint; only changed for a proxy or a test stand-in.
    token_uri: str | None = None
    # The API root (default Google's); a bare http(s)://host:port/ gets "calendar/v3/" added.
    api_endpoint: str | None = None
    # No credentials at all: only with api_endpoint (a local stand-in in tests).
    anonymous: bool = False
    # Never write answers back (and ask only for the read-only scope).
    read_only: bool = False
    # Zone of all-day events when Google names none for the calendar (an IANA name).
    timezone: Annotated[str | None, zone_setting(_zone)] = None
    # Seconds to wait for Google on each request.
    timeout: NotNegative = 30.0
    # Events per page (Google allows up to 2500).
    page_size: Annotated[int, between(1, 2500)] = 250
    # Rate-limit answers (403 rateLimitExceeded, 429) and 5xx are retried this many times,
    # waiting retry_delay, then twice as long each time.
    retries: int = 4
    retry_delay: NotNegative = 1.0

    @model_validator(mode="after")
    def _check_auth(self) -> GoogleSettings:
        service = bool(self.service_account_file or self.service_account_env)
        oauth = bool(
            self.client_id
            or self.client_secret_env
            or self.client_secret_file
            or self.has_secret("refresh_token")
        )
        chosen = [
            name
            for name, used in (
                ("service_account_file", service),
                ("client_id/refresh_token", oauth),
                ("anonymous", self.anonymous),
            )
            if used
        ]
        if len(chosen) != 1:
            raise ValueError(
                "give exactly one way to sign in: service_account_file (a service account's "
                "JSON key), or client_id + client_secret_env + refresh_token_env (OAuth), "
                f"not {' and '.join(chosen) or 'none'}"
            )
        if oauth and not (
            self.client_id
            and (self.client_secret_env or self.client_secret_file)
            and self.has_secret("refresh_token")
        ):
            raise ValueError(
                "OAuth sign-in needs client_id, client_secret_env (or _file) and "
                "refresh_token_env (or _file)"
            )
        if self.subject and not service:
            raise ValueError("subject (domain-wide delegation) needs service_account_file")
        if self.anonymous and not self.api_endpoint:
            raise ValueError("anonymous is only for a local stand-in: set api_endpoint too")
        return self


# ---- cursor -------------------------------------------------------------------------------


@dataclass
class _State(DeltaState):
    """The sync token, and master id -> series uid of the recurring events seen."""

    prefix = "google1:"
    token_key = "sync"
    source = "Google"

    series: dict[str, str] = field(default_factory=dict)

    def _more(self) -> dict[str, Any]:
        return {"series": self.series}

    @classmethod
    def _read_more(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"series": {str(k): str(v) for k, v in data["series"].items()}}


# ---- mapping ------------------------------------------------------------------------------


def _parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (Google always gives an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _when(value: Mapping[str, Any], zone: ZoneInfo) -> tuple[datetime, bool]:
    """(aware start, all-day) of a Google start/end: dateTime, or a date at midnight in ZONE."""
    text = value.get("dateTime")
    if text:
        return _parse_time(str(text)), False
    text = value.get("date")
    if text:
        return datetime.combine(date.fromisoformat(str(text)), dtime(), zone), True
    raise ValueError("it has neither dateTime nor date")


def _original_key(value: Mapping[str, Any]) -> str:
    """The occurrence key of an instance's originalStartTime."""
    if value.get("dateTime"):
        return occurrence_id(_parse_time(str(value["dateTime"])))
    if value.get("date"):
        return occurrence_id(date.fromisoformat(str(value["date"])))
    raise ValueError("originalStartTime has neither dateTime nor date")


def _text(description: str) -> str:
    """The plain text of a description (the Google Calendar web UI writes HTML)."""
    if _HTML.search(description):
        return html_to_text(description, keep_quotes=True).text
    return description.strip()


def event_key(item: Mapping[str, Any]) -> tuple[str, str]:
    """(uid, occurrence) of a Google event resource."""
    uid = str(item.get("iCalUID") or item["id"])
    if item.get("recurringEventId") and item.get("originalStartTime"):
        return uid, _original_key(item["originalStartTime"])
    return uid, ""


def _attendees(people: Any) -> tuple[Attendee, ...]:
    return tuple(
        Attendee(email=a.get("email") or None, name=a.get("displayName") or None)
        for a in people
        # Meeting rooms are not people to remind, nor the calendar's owner or the organizer
        # (Google lists them among the attendees): a reminder greets the patient.
        if not (a.get("resource") or a.get("self") or a.get("organizer"))
    )


def to_event(item: Mapping[str, Any], calendar_zone: str) -> CalendarEvent:
    """A Google event resource as a CalendarEvent (ValueError when it cannot be placed)."""
    # Run for every event read (the most of a sync's reading time after the fetch): each
    # field is looked up once.
    start_value = item.get("start", {})
    zone_name = _zone(start_value.get("timeZone")) or calendar_zone
    zone = ZoneInfo(zone_name)
    start, all_day = _when(start_value or {}, zone)
    end_value = item.get("end")
    end = _when(end_value, zone)[0] if end_value else None
    if all_day:
        zone_name = calendar_zone
    start = start.astimezone(zone)
    if end is not None:
        end = max(end.astimezone(zone), start)
    uid, occurrence = event_key(item)
    people = item.get("attendees")
    return CalendarEvent(
        uid=uid,
        occurrence=occurrence,
        start=start,
        end=end,
        timezone=zone_name,
        all_day=all_day,
        title=str(item.get("summary") or "").strip(),
        location=str(item.get("location") or "").strip(),
        description=_text(str(item.get("description") or "")),
        attendees=_attendees(people) if people else (),
        status=_STATUS.get(str(item.get("status", "")), EventStatus.CONFIRMED),
        etag=str(item.get("etag") or item.get("updated") or ""),
        raw={"id": item["id"], "recurringEventId": item.get("recurringEventId")},
    )


def _overlaps(event: CalendarEvent, start: datetime, end: datetime) -> bool:
    if event.end is not None and event.end > event.start:
        return event.end > start and event.start < end
    return start <= event.start < end


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- errors -------------------------------------------------------------------------------


@dataclass
class _Failure:
    status: int
    reason: str
    message: str


def _failure(exc: HttpError) -> _Failure:
    """Status, first reason and message of a Google error answer."""
    reason = ""
    message = str(getattr(exc, "reason", "") or "")
    try:
        error = json.loads(exc.content.decode("utf-8"))["error"]
        message = str(error.get("message") or message)
        errors = error.get("errors") or []
        # Older APIs give a reason per error, newer ones a status ("UNAUTHENTICATED").
        first = errors[0].get("reason") if errors else error.get("status")
        reason = str(first or "")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return _Failure(int(exc.resp.status), reason, message.strip())


class _Conflict(Exception):
    """If-Match failed (412): the event changed since we read it."""


# ---- the API resource ---------------------------------------------------------------------

# What build() reads from the environment: a resource built for other values is not reused.
_API_ENVIRONMENT = (
    "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
    "GOOGLE_API_USE_MTLS_ENDPOINT",
    "GOOGLE_API_USE_CLIENT_CERTIFICATE",
)


def _api_environment() -> tuple[str | None, ...]:
    return tuple(os.environ.get(name) for name in _API_ENVIRONMENT)


class _RequestsOnly:
    """The http a shared API resource is built with: it only makes the requests, each then
    run with its source's own signed-in http (``HttpRequest.execute(http=...)``).

    It carries the credentials' universe domain (None: no credentials) so that the library's
    check of the client's universe against the credentials' sees what it saw when every
    source built its own resource on its own http."""

    def __init__(self, universe: str | None) -> None:
        self.credentials = None if universe is None else SimpleNamespace(universe_domain=universe)

    def request(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise RuntimeError("a Google API request must run with its source's own http")

    def close(self) -> None:
        return None


@functools.lru_cache(maxsize=32)
def _events_api(endpoint: str | None, universe: str | None, environment: object) -> Any:
    """The ``events`` resource of Calendar API v3 at ENDPOINT, built once per process.

    Building it costs milliseconds (the discovery document read and parsed, then every
    method of the resource created with its docstring, schemas pretty-printed), more than
    mapping a page of events, and a source lives for one sync. Its methods only make
    requests from immutable state, so one resource serves every source and thread.
    ENVIRONMENT is ``_api_environment()``, part of the key only."""
    service = build(
        "calendar",
        "v3",
        http=_RequestsOnly(universe),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": endpoint} if endpoint else None,
    )
    return service.events()


# ---- the source ---------------------------------------------------------------------------


class GoogleCalendarSource(ThreadedSource[GoogleSettings]):
    """Implements hub.ports.calendar.CalendarSource for one Google calendar.

    The client library is blocking (httplib2 connections are not thread-safe): its calls
    run one at a time in a worker thread, each request within ``timeout``."""

    settings_model: ClassVar[type[CalendarSettings]] = GoogleSettings

    def __init__(self, settings: GoogleSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self.calendar_id = settings.calendar_id
        # The signed-in connection every request runs on (None until the first call).
        self._http: Any = None
        self._universe: str | None = None  # the credentials' universe domain, if any
        self._account = ""  # who we sign in as, for messages
        # (uid, occurrence) -> Google id of the occurrences seen: where annotate writes.
        self._by_key: dict[tuple[str, str], str] = {}

    # -- protocol -------------------------------------------------------------------------
    # No state files: the sync token travels in the cursor, and the API's discovery
    # document is not cached on disk.

    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        """Full listing of WINDOW when CURSOR is None, else the changes since it."""
        return await self._call(self._sync, window, cursor, what="read the calendar")

    @property
    def read_only(self) -> bool:
        return self.settings.read_only

    async def _annotate(self, event: CalendarEvent, note: str) -> bool:
        """Append NOTE to the event's description (once)."""
        await self._call(self._write_note, event, note, what="write on an event")
        return True

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            # httplib2 leaves its sockets open unless told.
            await asyncio.to_thread(http.close)

    # -- plumbing -------------------------------------------------------------------------
    def _credentials(self) -> Credentials:
        s = self.settings
        scopes = [READ_ONLY_SCOPE if s.read_only else SCOPE]
        if s.anonymous:
            self._account = "nobody (anonymous)"
            return AnonymousCredentials()
        if s.service_account_file or s.service_account_env:
            text = self._secret("service_account")
            where = s.service_account_file or f"${s.service_account_env}"
            try:
                info = json.loads(text or "")
                if not isinstance(info, dict) or info.get("type") != "service_account":
                    raise ValueError(
                        "it is not a service account key (type is not service_account)"
                    )
                if s.token_uri:
                    info["token_uri"] = s.token_uri
                creds = service_account.Credentials.from_service_account_info(
                    info, scopes=scopes, subject=s.subject
                )
            except (ValueError, KeyError) as exc:
                raise SourceError(
                    f"{self.name}: {where} is not a usable Google service account key: {exc}"
                ) from None
            email = str(info.get("client_email", "?"))
            self._account = f"{s.subject} (through {email})" if s.subject else email
            return creds
        self._account = f"the OAuth client {s.client_id}"
        # No scopes on refresh: the token keeps what the user consented to.
        return user_credentials.Credentials(
            token=None,
            refresh_token=self._secret("refresh_token"),
            client_id=s.client_id,
            client_secret=self._secret("client_secret"),
            token_uri=s.token_uri or TOKEN_URI,
        )

    def _endpoint(self) -> str | None:
        endpoint = self.settings.api_endpoint
        if not endpoint:
            return None
        if re.fullmatch(r"https?://[^/]+/?", endpoint):
            endpoint = endpoint.rstrip("/") + "/" + SERVICE_PATH
        return endpoint if endpoint.endswith("/") else endpoint + "/"

    def _api(self) -> Any:
        """The events resource, its requests to be run with this source's own http."""
        if self._http is None:
            creds = self._credentials()
            http: Any = httplib2.Http(timeout=self.settings.timeout)
            universe = None
            if not isinstance(creds, AnonymousCredentials):
                http = google_auth_httplib2.AuthorizedHttp(creds, http=http)
                universe = getattr(creds, "universe_domain", None)
            self._http, self._universe = http, universe
        return _events_api(self._endpoint(), self._universe, _api_environment())

    def _execute(self, request: Any, *, sync_token: bool = False, conflict: bool = False) -> Any:
        """Run one API request with retries; CursorExpired / SourceError on failure."""
        s = self.settings
        for attempt in range(s.retries + 1):
            delay = s.retry_delay * (2**attempt)
            try:
                return request.execute(http=self._http, num_retries=0)
            except HttpError as exc:
                failure = _failure(exc)
                if failure.status == 410 and sync_token:
                    raise CursorExpired(failure.message) from None
                if failure.status == 412 and conflict:
                    raise _Conflict() from None
                retry = failure.status in _RETRY_STATUSES or (
                    failure.status == 403 and failure.reason in _RATE_REASONS
                )
                if retry and attempt < s.retries:
                    log.info(
                        "%s: Google answered %s %s; retrying in %.1f s",
                        self.name,
                        failure.status,
                        failure.reason or failure.message,
                        delay,
                    )
                    time.sleep(delay)
                    continue
                raise SourceError(self._message(failure)) from None
            except auth_exceptions.RefreshError as exc:
                # args[0] is Google's "error: description"; args[1] the raw answer.
                raise self._refused(str(exc.args[0]) if exc.args else str(exc)) from None
            except auth_exceptions.GoogleAuthError as exc:
                if not isinstance(exc, auth_exceptions.TransportError):
                    raise self._refused(str(exc)) from None
                if self._wait_to_retry(attempt, delay, "Google's sign-in", exc):
                    continue
                raise SourceError(
                    f"cannot reach Google's sign-in service for {self.name}: {short(str(exc))}"
                ) from None
            except (TimeoutError, httplib2.HttpLib2Error, OSError) as exc:
                if self._wait_to_retry(attempt, delay, "Google", exc):
                    continue
                raise SourceError(
                    f"cannot reach Google Calendar for {self.name}: {exc or type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    def _refused(self, why: str) -> SourceError:
        return SourceError(
            f"Google refused the credentials for {self.name} ({self._account}): {short(why)}"
        )

    def _wait_to_retry(self, attempt: int, delay: float, what: str, exc: Exception) -> bool:
        """After failing to reach WHAT: wait DELAY and say True when an attempt is left."""
        if attempt >= self.settings.retries:
            return False
        log.info("%s: cannot reach %s (%s); retrying", self.name, what, exc)
        time.sleep(delay)
        return True

    def _message(self, failure: _Failure) -> str:
        """What the receptionist reads when Google said no."""
        detail = f"{failure.status} {failure.reason}: {failure.message}".replace(" :", ":")
        if failure.status == 401:
            return f"Google refused the credentials for {self.name} ({self._account}): {detail}"
        if failure.status == 403:
            if failure.reason in _RATE_REASONS or failure.reason in (
                "quotaExceeded",
                "dailyLimitExceeded",
            ):
                return f"Google's quota for {self.name} is used up, try again later: {detail}"
            return (
                f"Google refused access to calendar {self.calendar_id!r} for {self.name} "
                f"({self._account}): {detail} — is the calendar shared with that account, "
                "and the Calendar API enabled for the project?"
            )
        if failure.status == 404:
            return (
                f"Google calendar {self.calendar_id!r} was not found for {self.name} "
                f"({self._account}): check calendar_id, and that the calendar is shared "
                "with that account"
            )
        if failure.status == 429:
            return f"Google kept answering 'too many requests' for {self.name}: {detail}"
        return f"Google Calendar answered an error for {self.name}: {detail}"

    # -- reading --------------------------------------------------------------------------
    def _pages(self, **query: Any) -> Iterator[dict[str, Any]]:
        """Every page of one events.list query."""
        events = self._api()
        page_token = None
        for _ in range(_MAX_PAGES):
            request = events.list(
                calendarId=self.calendar_id,
                singleEvents=True,
                maxResults=self.settings.page_size,
                pageToken=page_token,
                fields=LIST_FIELDS,
                **query,
            )
            page = self._execute(request, sync_token="syncToken" in query)
            yield page
            page_token = page.get("nextPageToken")
            if not page_token:
                return
        raise SourceError(f"Google Calendar sent more than {_MAX_PAGES} pages for {self.name}")

    def _walk(
        self, take: Callable[[list[dict[str, Any]], str], object], **query: Any
    ) -> tuple[str | None, str]:
        """Hand the items of a whole events.list query to TAKE, with the calendar's zone, a
        page at a time as soon as the zone is known (Google gives it on every page; items
        listed before wait for it): a calendar's raw items are not all held at once, and
        fewer of them live long enough to weigh on the garbage collector. Returns the
        nextSyncToken and the calendar's zone."""
        waiting: list[dict[str, Any]] = []
        token = None
        zone = None
        for page in self._pages(**query):
            waiting.extend(page.get("items") or [])
            zone = zone or page.get("timeZone")
            token = page.get("nextSyncToken") or token
            if zone and waiting:
                take(waiting, self._calendar_zone(zone))
                waiting = []
        calendar_zone = self._calendar_zone(zone)
        if waiting:
            take(waiting, calendar_zone)
        return token, calendar_zone

    def _list(self, **query: Any) -> tuple[list[dict[str, Any]], str | None, str]:
        """(items, nextSyncToken, calendar zone) of a whole events.list query."""
        items: list[dict[str, Any]] = []
        token, zone = self._walk(lambda batch, _zone: items.extend(batch), **query)
        return items, token, zone

    def _calendar_zone(self, zone: str | None) -> str:
        """The zone of all-day events: the calendar's (ZONE as Google gave it), else ours."""
        return _zone(zone) or self.settings.timezone or "UTC"

    def _list_events(
        self, warnings: list[str], **query: Any
    ) -> tuple[list[CalendarEvent], str | None]:
        """(events, nextSyncToken) of a whole events.list query, cancelled items left out,
        each page mapped as it arrives (``_walk``)."""
        events: list[CalendarEvent] = []

        def take(batch: list[dict[str, Any]], zone: str) -> None:
            events.extend(self._map(batch, zone, warnings))

        token, _ = self._walk(take, **query)
        return events, token

    def _map(
        self, items: list[dict[str, Any]], zone: str, warnings: list[str]
    ) -> list[CalendarEvent]:
        found = []
        for item in items:
            if item.get("status") == "cancelled":
                continue
            try:
                found.append(to_event(item, zone))
            except (ValueError, KeyError, TypeError) as exc:
                label = item.get("summary") or item.get("id")
                warnings.append(f"{self.name}: Google event {label!r} skipped: {exc}")
        return found

    def _remember(self, state: _State, event: CalendarEvent) -> None:
        self._by_key[event.key] = state.saw(event)
        master = event.raw.get("recurringEventId")
        if master:
            state.series[str(master)] = event.uid

    def _sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        if cursor is None:
            return self._full(window)
        state = _State.load(cursor)
        self._by_key.update({key: gid for gid, key in state.ids.items()})
        return self._delta(window, state)

    def _full(self, window: SyncWindow) -> SyncResult:
        warnings: list[str] = []
        events, token = self._list_events(
            warnings, timeMin=_rfc3339(window.start), timeMax=_rfc3339(window.end)
        )
        if not token:
            raise SourceError(f"Google Calendar gave no sync token for {self.name}")
        state = _State(token, window.start, window.end)
        for event in events:
            self._remember(state, event)
        return SyncResult(events=events, full=True, cursor=state.dump(), warnings=warnings)

    def _delta(self, window: SyncWindow, state: _State) -> SyncResult:
        warnings: list[str] = []
        items, token, zone = self._list(syncToken=state.token)
        removed: list[Removed] = []
        changed: dict[tuple[str, str], CalendarEvent] = {}
        for item in items:
            if item.get("status") != "cancelled":
                continue
            gone = self._forget(state, item)
            if gone is not None:
                removed.append(gone)
        for event in self._map(items, zone, warnings):
            if _overlaps(event, state.start, state.until):
                changed[event.key] = event
                self._remember(state, event)
            else:
                # Moved out of the synced range: for the hub, the occurrence is gone.
                removed.append(Removed(event.uid, event.occurrence))
                google_id = str(event.raw["id"])
                state.ids.pop(google_id, None)
        if window.end > state.until:
            # The window moved on: occurrences entering it were never listed (the sync token
            # only reports changes), so list the new slice by time.
            more, _ = self._list_events(
                warnings, timeMin=_rfc3339(state.until), timeMax=_rfc3339(window.end)
            )
            for event in more:
                changed[event.key] = event
                self._remember(state, event)
            state.until = window.end
        state.token = token or state.token
        removed = [r for r in removed if (r.uid, r.occurrence) not in changed]
        return SyncResult(
            events=list(changed.values()),
            removed=removed,
            full=False,
            cursor=state.dump(),
            warnings=warnings,
        )

    def _forget(self, state: _State, item: Mapping[str, Any]) -> Removed | None:
        """The Removed for a cancelled item (deleted event, cancelled instance or series)."""
        google_id = str(item.get("id", ""))
        master = item.get("recurringEventId")
        known = state.ids.pop(google_id, None)
        if master and item.get("originalStartTime"):
            uid = str(item.get("iCalUID") or state.series.get(str(master)) or "")
            if not uid and known is not None:
                uid = known[0]
            try:
                occurrence = _original_key(item["originalStartTime"])
            except ValueError:
                occurrence = known[1] if known else ""
            return Removed(uid, occurrence) if uid else None
        if known is not None:
            return Removed(*known)
        if google_id in state.series:
            # The whole series was deleted: every occurrence goes.
            uid = state.series.pop(google_id)
            state.ids = {k: v for k, v in state.ids.items() if v[0] != uid}
            return Removed(uid, None)
        if item.get("iCalUID"):
            return Removed(str(item["iCalUID"]), None)
        return None  # never seen: nothing of it is stored

    # -- writing --------------------------------------------------------------------------
    def _find(self, event: CalendarEvent) -> str | None:
        """The Google id of EVENT's occurrence, looked up around its start."""
        items, _, _ = self._list(
            timeMin=_rfc3339(event.start - timedelta(days=1)),
            timeMax=_rfc3339(event.start + timedelta(days=1)),
        )
        for item in items:
            try:
                if event_key(item) == event.key:
                    return str(item["id"])
            except (ValueError, KeyError):
                continue
        return None

    def _write_note(self, event: CalendarEvent, note: str) -> None:
        google_id = self._by_key.get(event.key) or self._find(event)
        if google_id is None:
            raise SourceError(
                f"{self.name}: cannot find {event.title or event.uid!r} "
                f"({event.start:%Y-%m-%d %H:%M}) in Google Calendar to write {note!r}"
            )
        events = self._api()
        for _ in range(3):
            current = self._execute(events.get(calendarId=self.calendar_id, eventId=google_id))
            description = str(current.get("description") or "")
            if note in description:
                return  # already written (an earlier try got through)
            if _HTML.search(description):
                updated = f"{description}<br><br>{html.escape(note)}"
            else:
                updated = f"{description.rstrip()}\n\n{note}" if description.strip() else note
            body = {
                "description": updated,
                "extendedProperties": {"private": {"smshubAnswer": note}},
            }
            request = events.patch(calendarId=self.calendar_id, eventId=google_id, body=body)
            # Someone editing the event meanwhile must not lose their change to ours.
            if current.get("etag"):
                request.headers["If-Match"] = current["etag"]
            try:
                self._execute(request, conflict=True)
                return
            except _Conflict:
                continue
        raise SourceError(f"{self.name}: the event kept changing while writing {note!r}")


def installed_app_login(
    client_id: str,
    client_secret: str,
    *,
    read_only: bool = False,
    open_browser: bool = True,
    port: int = 0,
    show: Callable[[str], None] = print,
) -> str:
    """Ask a user's consent in a browser (OAuth installed-app flow); their refresh token.

    For the CLI, once per calendar: the OAuth client is a "Desktop app" client of a Google
    Cloud project with the Calendar API enabled. A local web server on PORT (0: any free
    one) receives Google's redirect, so the browser must run on this machine (or reach it
    through an SSH tunnel; with OPEN_BROWSER false the URL is shown with SHOW). Store the
    result in a file or the environment named by ``refresh_token_file`` / ``_env``.
    Raises SourceError when the consent fails.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    config = {
        "installed": {
            "client_id": client_id,
            "client_secret": client_secret,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": TOKEN_URI,
            "redirect_uris": ["http://localhost"],
        }
    }
    flow = InstalledAppFlow.from_client_config(
        config, scopes=[READ_ONLY_SCOPE if read_only else SCOPE]
    )
    try:
        creds = flow.run_local_server(
            port=port,
            open_browser=open_browser,
            authorization_prompt_message="Open this address to allow smshub to read the "
            "calendar: {url}",
            # Without both, Google gives no refresh token to an app it has seen before.
            access_type="offline",
            prompt="consent",
        )
    except Exception as exc:  # oauthlib and the local server raise many kinds
        raise SourceError(f"the Google sign-in did not complete: {short(str(exc))}") from None
    if not creds.refresh_token:
        raise SourceError("Google gave no refresh token: revoke the app's access and retry")
    show("Google sign-in complete.")
    return str(creds.refresh_token)
