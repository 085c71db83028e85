"""Microsoft 365 / Outlook.com calendars, through Microsoft Graph (httpx, async) and MSAL.

Reading: the ``calendarView/delta`` function. The first round lists every occurrence between
``startDateTime`` and ``endDateTime`` (recurring series come expanded), page by page
(``Prefer: odata.maxpagesize``) following ``@odata.nextLink`` until ``@odata.deltaLink``:
that link is the cursor, and GETting it later returns only what changed, deletions as items
with ``@removed``. The dates are encoded in the delta token, so the range asked for is the
window plus ``lookahead_days``; once the hub's window passes its end, a new full round starts.

Keys: Graph's ``iCalUId`` differs for each occurrence of a series, so an occurrence is keyed
by its series (``uid`` = ``seriesMasterId``) and ``occurrence_id(originalStart)``; a single
event by its ``iCalUId``. A removed item only has its ``id``: the cursor keeps the id → key
map of what was seen. Ids are asked as immutable (``Prefer: IdType="ImmutableId"``) so that
they survive moving the event between folders.

Times: ``Prefer: outlook.timezone="UTC"`` makes every ``start``/``end`` UTC; the event's own
zone (``originalStartTimeZone``, a Windows name such as "Romance Standard Time" or an IANA
name) is used to show it. All-day events always come as midnight-to-midnight dates whatever
zone is asked (Microsoft's answer in microsoft-graph-docs#1802): they are placed at midnight
in the event's zone.

Auth with MSAL, one of:

* client credentials (an app registration with the ``Calendars.ReadWrite`` application
  permission): ``tenant_id``, ``client_id``, ``client_secret_env``, and the mailbox ``user``;
* a user's refresh token (delegated ``Calendars.ReadWrite``): ``client_id`` and
  ``refresh_token_env`` (``tenant_id`` "common", "consumers" for Outlook.com, or the
  tenant). :func:`device_code_login` obtains one from a terminal. Microsoft rotates refresh
  tokens: the newest is kept in the data directory and used from then on.

MSAL requires an https:// authority; ``ca_file`` lets it (and the Graph client) trust a
private CA: a TLS-inspecting proxy, or the tests' local stand-in.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx

from connectors.calendar.base import CalendarSourceBase, short
from connectors.calendar.cursor import DeltaState
from connectors.calendar.graph_login import device_code_login
from connectors.calendar.graph_settings import GraphSettings, zone_name
from connectors.calendar.graph_signin import SignIn
from connectors.calendar.graph_tokens import token_file
from hub.errors import CursorExpired, SourceError
from hub.mail.parse import html_to_text
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    CalendarSettings,
    EventStatus,
    Removed,
    SourceContext,
    StateFile,
    SyncResult,
    SyncWindow,
    occurrence_id,
)

log = logging.getLogger("smshub.calendar.graph")

# Error codes Graph uses for a delta token it no longer knows (with 410 Gone, usually).
_RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_PAGES = 10_000


# ---- time zones ---------------------------------------------------------------------------


def _naive(value: str) -> datetime:
    """Graph's "2024-03-11T08:00:00.0000000" (7 decimals) as a naive datetime."""
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=None) if parsed.tzinfo is None else parsed


def _aware(value: Mapping[str, Any], default_zone: str) -> datetime:
    """A dateTimeTimeZone as an aware datetime."""
    parsed = _naive(str(value["dateTime"]))
    if parsed.tzinfo is not None:
        return parsed
    zone = zone_name(value.get("timeZone")) or default_zone
    return parsed.replace(tzinfo=ZoneInfo(zone))


def _day(value: Mapping[str, Any], zone: ZoneInfo) -> datetime:
    """The start of an all-day event's day, at midnight in ZONE."""
    parsed = _naive(str(value["dateTime"]))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(zone).replace(tzinfo=None)
    elif parsed.time() != time():
        # Not the documented midnight: read it in its zone and take that day in ZONE.
        given = zone_name(value.get("timeZone")) or "UTC"
        parsed = parsed.replace(tzinfo=ZoneInfo(given)).astimezone(zone).replace(tzinfo=None)
    return datetime.combine(parsed.date(), time(), zone)


# ---- mapping ------------------------------------------------------------------------------


def event_zone(item: Mapping[str, Any], default: str) -> str:
    """The IANA zone an event was created in (its originalStartTimeZone), else DEFAULT."""
    return zone_name(item.get("originalStartTimeZone")) or default


def event_key(item: Mapping[str, Any], default_zone: str) -> tuple[str, str]:
    """(uid, occurrence) of a Graph event: per series and original start for occurrences."""
    master = item.get("seriesMasterId")
    if master and item.get("originalStart"):
        original = _naive(str(item["originalStart"]))
        if original.tzinfo is None:
            original = original.replace(tzinfo=UTC)  # documented as always UTC
        if item.get("isAllDay"):
            zone = ZoneInfo(event_zone(item, default_zone))
            # The day whose midnight is nearest, in the event's zone: right whether Graph
            # stores an all-day original start as midnight there or as midnight UTC.
            day = (original.astimezone(zone) + timedelta(hours=12)).date()
            return str(master), occurrence_id(day)
        return str(master), occurrence_id(original)
    return str(item.get("iCalUId") or item["id"]), ""


def _body_text(body: Mapping[str, Any] | None) -> str:
    if not body:
        return ""
    content = str(body.get("content") or "")
    if str(body.get("contentType", "")).lower() == "html":
        return html_to_text(content, keep_quotes=True).text
    return content.strip()


def to_event(item: Mapping[str, Any], default_zone: str) -> CalendarEvent:
    """A Graph event resource as a CalendarEvent (ValueError/KeyError when unusable)."""
    zone_id = event_zone(item, default_zone)
    zone = ZoneInfo(zone_id)
    all_day = bool(item.get("isAllDay"))
    if all_day:
        start = _day(item["start"], zone)
        end = _day(item["end"], zone) if item.get("end") else None
    else:
        start = _aware(item["start"], "UTC").astimezone(zone)
        end = _aware(item["end"], "UTC").astimezone(zone) if item.get("end") else None
    if end is not None and end < start:
        end = start
    uid, occurrence = event_key(item, default_zone)
    attendees = tuple(
        Attendee(
            email=(a.get("emailAddress") or {}).get("address") or None,
            name=(a.get("emailAddress") or {}).get("name") or None,
        )
        for a in item.get("attendees") or ()
        if a.get("type") != "resource"  # rooms and equipment are not people to remind
    )
    return CalendarEvent(
        uid=uid,
        occurrence=occurrence,
        start=start,
        end=end,
        timezone=zone_id,
        all_day=all_day,
        title=str(item.get("subject") or "").strip(),
        location=str((item.get("location") or {}).get("displayName") or "").strip(),
        description=_body_text(item.get("body")),
        attendees=attendees,
        status=EventStatus.CANCELLED if item.get("isCancelled") else EventStatus.CONFIRMED,
        etag=str(item.get("changeKey") or item.get("@odata.etag") or ""),
        raw={"id": item["id"], "seriesMasterId": item.get("seriesMasterId")},
    )


# ---- cursor -------------------------------------------------------------------------------


class _State(DeltaState):
    """The deltaLink, the range it covers, what was seen (Graph ids are long and share
    prefixes: compressed, the map stays small)."""

    prefix = "graph1:"
    token_key = "delta"
    source = "Graph"


# ---- the source ---------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    code: str
    message: str


class GraphCalendarSource(CalendarSourceBase[GraphSettings]):
    """Implements hub.ports.calendar.CalendarSource for one Microsoft 365 / Outlook.com calendar."""

    settings_model: ClassVar[type[CalendarSettings]] = GraphSettings

    def __init__(self, settings: GraphSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self._signin = SignIn(settings, ctx, ctx.name)
        self._token: str | None = None
        self._client: httpx.AsyncClient | None = None
        owner = f"/users/{quote(settings.user, safe='@')}" if settings.user else "/me"
        self._owner = settings.graph_base_url + owner
        self._calendar = (
            f"{self._owner}/calendars/{quote(settings.calendar_id, safe='')}"
            if settings.calendar_id
            else self._owner
        )
        self._zone = settings.timezone or "UTC"
        self._by_key: dict[tuple[str, str], str] = {}
        self._mailbox = settings.user or "the signed-in user"

    # -- protocol -------------------------------------------------------------------------
    @classmethod
    def state_files(cls, settings: GraphSettings, ctx: SourceContext) -> list[StateFile]:
        """The renewed refresh token (signed in as a user; nothing with client credentials)."""
        if settings.app_only:
            return []
        kept = token_file(settings, ctx)
        what = "renewed refresh token"
        return [StateFile(kept, what), StateFile(kept.with_suffix(".tmp"), what)]

    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        """A full delta round when CURSOR is None (or the window left its range), else changes."""
        state = _State.load(cursor) if cursor else None
        if state is not None:
            self._by_key.update({key: gid for gid, key in state.ids.items()})
            if window.end > state.until:
                log.info("%s: the window passed the synced range; new full round", self.name)
                state = None
        if state is None:
            return await self._full(window)
        return await self._delta(state)

    @property
    def read_only(self) -> bool:
        return self.settings.read_only

    async def _annotate(self, event: CalendarEvent, note: str) -> bool:
        """Append NOTE to the event's body (once)."""
        event_id = self._by_key.get(event.key) or await self._find(event)
        if event_id is None:
            raise SourceError(
                f"{self.name}: cannot find {event.title or event.uid!r} "
                f"({event.start:%Y-%m-%d %H:%M}) in the Outlook calendar to write {note!r}"
            )
        url = f"{self._owner}/events/{quote(event_id, safe='')}"
        current = await self._request("GET", url, params={"$select": "body"})
        body = current.get("body") or {}
        content = str(body.get("content") or "")
        kind = str(body.get("contentType") or "text").lower()
        if note in _body_text(body):
            return True  # already written (an earlier try got through)
        if kind == "html":
            addition = f"<p>{html.escape(note)}</p>"
            closing = re.search(r"</body\s*>", content, re.IGNORECASE)
            if closing:
                content = content[: closing.start()] + addition + content[closing.start() :]
            else:
                content += addition
        else:
            content = f"{content.rstrip()}\n\n{note}" if content.strip() else note
        await self._request(
            "PATCH", url, json_body={"body": {"contentType": kind, "content": content}}
        )
        return True

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- HTTP -----------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            verify: ssl.SSLContext | bool = True
            if self.settings.ca_file:
                verify = ssl.create_default_context(cafile=self.settings.ca_file)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout), verify=verify
            )
        return self._client

    async def _access_token(self, renew: bool = False) -> str:
        if self._token is None or renew:
            self._token = await asyncio.to_thread(self._signin.token)
        return self._token

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        delta: bool = False,
    ) -> dict[str, Any]:
        """One Graph request with retries; its JSON; CursorExpired / SourceError."""
        s = self.settings
        prefer = [
            'outlook.timezone="UTC"',
            'IdType="ImmutableId"',
            f"odata.maxpagesize={s.page_size}",
        ]
        for attempt in range(s.retries + 1):
            token = await self._access_token()
            headers = {"Authorization": f"Bearer {token}", "Prefer": ", ".join(prefer)}
            try:
                response = await self._http().request(
                    method, url, params=params, json=json_body, headers=headers
                )
            except httpx.TimeoutException:
                if attempt < s.retries:
                    continue
                raise SourceError(
                    f"Microsoft Graph did not answer within {s.timeout:g} s for {self.name}"
                ) from None
            except httpx.HTTPError as exc:
                if attempt < s.retries:
                    await asyncio.sleep(min(2.0**attempt, s.max_retry_wait))
                    continue
                raise SourceError(
                    f"cannot reach Microsoft Graph ({s.graph_base_url}) for {self.name}: "
                    f"{exc or type(exc).__name__}"
                ) from None
            if response.status_code < 300:
                try:
                    found = response.json() if response.content else {}
                except ValueError:
                    raise SourceError(
                        f"Microsoft Graph sent something that is not JSON for {self.name}"
                    ) from None
                return found if isinstance(found, dict) else {}
            answer = _answer(response)
            if delta and (answer.status == 410 or answer.code.lower() in _RESYNC_CODES):
                raise CursorExpired(f"{answer.code}: {answer.message}")
            if answer.status in _RETRY_STATUSES and attempt < s.retries:
                wait = _retry_after(response, default=2.0**attempt)
                wait = min(wait, s.max_retry_wait)
                log.info(
                    "%s: Graph answered %s (%s); retrying in %.1f s",
                    self.name,
                    answer.status,
                    answer.code,
                    wait,
                )
                await asyncio.sleep(wait)
                continue
            if answer.status == 401 and attempt == 0:
                # An access token revoked or expired early: one new one, then give up.
                await self._access_token(renew=True)
                continue
            raise SourceError(self._message(answer))
        raise AssertionError("unreachable")

    def _message(self, answer: _Answer) -> str:
        """What the receptionist reads when Graph said no."""
        detail = f"{answer.status} {answer.code}: {answer.message}".strip().rstrip(":")
        if answer.status == 401:
            return f"Microsoft refused the credentials for {self.name}: {detail}"
        if answer.status == 403:
            hint = (
                "the app needs the application permission Calendars.ReadWrite with admin "
                "consent (and no access policy excluding this mailbox)"
                if self.settings.app_only
                else "the user must consent to Calendars.ReadWrite for the app"
            )
            return (
                f"Microsoft refused access to {self._mailbox}'s calendar for {self.name}: "
                f"{detail} — {hint}"
            )
        if answer.status == 404:
            what = (
                f"calendar {self.settings.calendar_id!r} of " if self.settings.calendar_id else ""
            )
            return (
                f"Microsoft Graph does not find {what}{self._mailbox} for {self.name}: {detail} "
                "— check user and calendar_id"
            )
        if answer.status in _RETRY_STATUSES:
            return (
                f"Microsoft Graph is throttling or overloaded for {self.name} ({detail}); "
                "the next sync tries again"
            )
        return f"Microsoft Graph answered an error for {self.name}: {detail}"

    # -- reading --------------------------------------------------------------------------
    async def _round(
        self, url: str, params: Mapping[str, str] | None
    ) -> tuple[list[dict[str, Any]], str]:
        """Every page of one delta round: (items, the deltaLink ending it)."""
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            page = await self._request("GET", url, params=params, delta=True)
            items.extend(page.get("value") or [])
            if page.get("@odata.nextLink"):
                url, params = str(page["@odata.nextLink"]), None
                continue
            if page.get("@odata.deltaLink"):
                return items, str(page["@odata.deltaLink"])
            raise SourceError(
                f"Microsoft Graph ended a page with neither nextLink nor deltaLink for {self.name}"
            )
        raise SourceError(f"Microsoft Graph sent more than {_MAX_PAGES} pages for {self.name}")

    def _map(self, item: Mapping[str, Any], warnings: list[str]) -> CalendarEvent | None:
        try:
            return to_event(item, self._zone)
        except (ValueError, KeyError, TypeError) as exc:
            label = item.get("subject") or item.get("id")
            warnings.append(f"{self.name}: Outlook event {label!r} skipped: {exc!r}")
            return None

    def _remember(self, state: _State, event: CalendarEvent) -> None:
        self._by_key[event.key] = state.saw(event)

    async def _full(self, window: SyncWindow) -> SyncResult:
        until = window.end + timedelta(days=self.settings.lookahead_days)
        params = {"startDateTime": _iso(window.start), "endDateTime": _iso(until)}
        items, delta_link = await self._round(f"{self._calendar}/calendarView/delta", params)
        state = _State(delta_link, window.start, until)
        warnings: list[str] = []
        events: dict[tuple[str, str], CalendarEvent] = {}
        for item in items:
            if "@removed" in item:
                continue
            event = self._map(item, warnings)
            if event is not None:
                events[event.key] = event
                self._remember(state, event)
        return SyncResult(
            events=list(events.values()), full=True, cursor=state.dump(), warnings=warnings
        )

    async def _delta(self, state: _State) -> SyncResult:
        items, delta_link = await self._round(state.token, None)
        warnings: list[str] = []
        events: dict[tuple[str, str], CalendarEvent] = {}
        removed: dict[tuple[str, str], Removed] = {}
        for item in items:
            graph_id = str(item.get("id", ""))
            if "@removed" in item:
                known = state.ids.pop(graph_id, None)
                if known is not None:
                    removed[known] = Removed(*known)
                    events.pop(known, None)
                continue
            event = self._map(item, warnings)
            if event is not None:
                events[event.key] = event
                removed.pop(event.key, None)
                self._remember(state, event)
        state.token = delta_link
        return SyncResult(
            events=list(events.values()),
            removed=list(removed.values()),
            full=False,
            cursor=state.dump(),
            warnings=warnings,
        )

    async def _find(self, event: CalendarEvent) -> str | None:
        """The Graph id of EVENT's occurrence, looked up around its start."""
        url = f"{self._calendar}/calendarView"
        params: Mapping[str, str] | None = {
            "startDateTime": _iso(event.start - timedelta(days=1)),
            "endDateTime": _iso(event.start + timedelta(days=1)),
        }
        for _ in range(100):
            page = await self._request("GET", url, params=params)
            for item in page.get("value") or []:
                try:
                    if event_key(item, self._zone) == event.key:
                        return str(item["id"])
                except (ValueError, KeyError):
                    continue
            if not page.get("@odata.nextLink"):
                return None
            url, params = str(page["@odata.nextLink"]), None
        return None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _answer(response: httpx.Response) -> _Answer:
    """Status, error code and message of a Graph error answer."""
    code, message = "", response.reason_phrase
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code") or "")
        message = str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    return _Answer(response.status_code, code, short(message))


def _retry_after(response: httpx.Response, default: float) -> float:
    """Seconds the server asks to wait (Retry-After in seconds), else DEFAULT."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


# device_code_login is looked up here by `smshub calendars auth microsoft` (next to the
# source its entry point names).
__all__ = [
    "GraphCalendarSource",
    "GraphSettings",
    "device_code_login",
    "event_key",
    "to_event",
    "zone_name",
]
