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
import base64
import contextlib
import hashlib
import html
import json
import logging
import re
import ssl
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import httpx
import msal
import requests
from pydantic import field_validator, model_validator

from hub.errors import ConfigError, CursorExpired, SecretUnreadable, SourceError
from hub.mail.parse import html_to_text
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    CalendarSettings,
    EventStatus,
    NotNegative,
    Removed,
    SourceContext,
    StateFile,
    SyncResult,
    SyncWindow,
    occurrence_id,
    zone_setting,
)
from hub.ports.calendar import zone_name as calendar_zone_name

log = logging.getLogger("smshub.calendar.graph")

GRAPH_URL = "https://graph.microsoft.com/v1.0"
AUTHORITY = "https://login.microsoftonline.com"
# Error codes Graph uses for a delta token it no longer knows (with 410 Gone, usually).
_RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Tenants that are not one organisation: no client credentials there.
_MULTI_TENANTS = frozenset({"common", "organizations", "consumers"})
_MAX_PAGES = 10_000
_UTC_NAMES = ("tzone://microsoft/utc", "utc", "coordinated universal time")


def zone_name(name: str | None) -> str | None:
    """The IANA name for NAME (IANA, or a Windows name such as "Romance Standard Time").

    Microsoft's names for UTC, in any case, give "UTC".
    """
    if name and name.strip().lower() in _UTC_NAMES:
        return "UTC"
    return calendar_zone_name(name)


class GraphSettings(CalendarSettings):
    """Settings of a Microsoft 365 / Outlook.com calendar."""

    type: Literal["graph"] = "graph"
    # The app registration (Entra ID → App registrations) and its directory.
    client_id: str
    tenant_id: str = "common"
    # Client credentials (application permission Calendars.ReadWrite, admin consent)...
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    # ...or a user's refresh token (delegated permission), see device_code_login().
    refresh_token_env: str | None = None
    refresh_token_file: str | None = None
    # The mailbox (user principal name or id); required with client credentials, else "me".
    user: str | None = None
    # A calendar's id (GET /users/{user}/calendars); default: the mailbox's main calendar.
    calendar_id: str | None = None
    graph_base_url: str = GRAPH_URL
    authority: str = AUTHORITY
    # PEM bundle of CAs to trust instead of the system's (a TLS-inspecting proxy, tests).
    ca_file: str | None = None
    # Zone of events whose own zone Graph does not name (default UTC).
    timezone: Annotated[str | None, zone_setting(zone_name)] = None
    timeout: NotNegative = 30.0
    page_size: int = 100
    # The delta range goes this far beyond the window, so a full round is needed that rarely.
    lookahead_days: NotNegative = 7.0
    # 429/503 answers are retried this many times, waiting what Retry-After says, at most
    # max_retry_wait seconds (0 in tests); without Retry-After, 1 s then twice as long each time.
    retries: int = 4
    max_retry_wait: NotNegative = 60.0
    # Never write answers back (and ask only for Calendars.Read with a refresh token).
    read_only: bool = False

    @field_validator("graph_base_url", "authority")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
            raise ValueError(f"{value!r} is not an http(s):// URL")
        return value

    @field_validator("page_size")
    @classmethod
    def _check_page(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("must be between 1 and 1000")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> GraphSettings:
        secret = bool(self.client_secret_env or self.client_secret_file)
        refresh = self.has_secret("refresh_token")
        if not secret and not refresh:
            raise ValueError(
                "give client_secret_env (app-only access to a mailbox) or refresh_token_env "
                "(a user's sign-in, see `device_code_login`)"
            )
        if not refresh:
            if self.tenant_id.lower() in _MULTI_TENANTS:
                raise ValueError(
                    "client credentials need tenant_id: your directory's id or domain, "
                    f"not {self.tenant_id!r}"
                )
            if not self.user:
                raise ValueError("client credentials need user: the mailbox whose calendar to read")
        return self

    @property
    def app_only(self) -> bool:
        """True for client credentials (no user signed in)."""
        return not self.has_secret("refresh_token")


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


@dataclass
class _State:
    """What the cursor carries: the deltaLink, the range it covers, what was seen."""

    delta_link: str
    start: datetime
    until: datetime
    ids: dict[str, tuple[str, str]] = field(default_factory=dict)

    def dump(self) -> str:
        data = {
            "v": 1,
            "delta": self.delta_link,
            "from": self.start.astimezone(UTC).isoformat(),
            "until": self.until.astimezone(UTC).isoformat(),
            "ids": {k: list(v) for k, v in self.ids.items()},
        }
        # Graph ids are long and share prefixes: compressed, the map stays small.
        packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
        return "graph1:" + base64.urlsafe_b64encode(packed).decode("ascii")

    @classmethod
    def load(cls, cursor: str) -> _State:
        """The state in CURSOR; CursorExpired when it is not one of ours (a full sync)."""
        try:
            if not cursor.startswith("graph1:"):
                raise ValueError("not a graph1 cursor")
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(cursor[7:])))
            return cls(
                delta_link=str(data["delta"]),
                start=datetime.fromisoformat(data["from"]),
                until=datetime.fromisoformat(data["until"]),
                ids={k: (str(v[0]), str(v[1])) for k, v in data["ids"].items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, zlib.error) as exc:
            raise CursorExpired(f"unreadable Graph cursor ({exc})") from None


# ---- sign-in ------------------------------------------------------------------------------


def graph_scopes(graph_base_url: str, *, app_only: bool, read_only: bool = False) -> list[str]:
    """The scopes to ask: the resource's ".default" app-only, else the calendar permission."""
    parts = urlsplit(graph_base_url)
    resource = f"{parts.scheme}://{parts.netloc}"
    if app_only:
        return [f"{resource}/.default"]
    return [f"{resource}/{'Calendars.Read' if read_only else 'Calendars.ReadWrite'}"]


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _msal_error(result: Mapping[str, Any]) -> str:
    """The first line of an AADSTS error description, with its code."""
    description = str(result.get("error_description") or "").strip().splitlines()
    first = description[0] if description else ""
    return _short(f"{result.get('error', 'error')}: {first}".rstrip(": "))


def _msal_app(
    client_id: str,
    authority_url: str,
    *,
    secret: str | None,
    ca_file: str | None,
    timeout: float,
) -> msal.ClientApplication:
    """A ConfidentialClientApplication (with SECRET) or PublicClientApplication (blocking)."""
    options: dict[str, Any] = {"timeout": timeout}
    if ca_file:
        options = {"http_client": _PinnedSession(ca_file, timeout)}
    # instance_discovery=False: the authority is the one configured (Microsoft's, a national
    # cloud's, or a stand-in), MSAL must not ask login.microsoftonline.com to vouch for it.
    if secret is not None:
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=secret,
            authority=authority_url,
            instance_discovery=False,
            **options,
        )
    return msal.PublicClientApplication(
        client_id, authority=authority_url, instance_discovery=False, **options
    )


class _PinnedSession(requests.Session):
    """A requests session that trusts CA_FILE even when REQUESTS_CA_BUNDLE is set.

    requests lets that variable override a session's ``verify`` (it only yields to a
    per-request one), and many machines set it to the system bundle.
    """

    def __init__(self, ca_file: str, timeout: float) -> None:
        super().__init__()
        self.verify = ca_file
        self._timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("verify", self.verify)
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def device_code_login(
    client_id: str,
    *,
    tenant_id: str = "common",
    authority: str = AUTHORITY,
    graph_base_url: str = GRAPH_URL,
    read_only: bool = False,
    ca_file: str | None = None,
    show: Callable[[str], None] = print,
    timeout: float = 30.0,
) -> str:
    """Sign a user in from a terminal (OAuth device code flow); their refresh token.

    SHOW receives Microsoft's instruction ("To sign in, use a web browser to open the page
    https://microsoft.com/devicelogin and enter the code ABCD1234..."); the call then blocks
    until the user has signed in (or the code expired, about 15 minutes). Store the result
    in a file or the environment and name it in the calendar's ``refresh_token_file`` /
    ``refresh_token_env``. The app registration must allow public client flows, with the
    delegated permission Calendars.ReadWrite (Calendars.Read when READ_ONLY).
    Raises SourceError with Microsoft's reason when it fails.
    """
    try:
        app = _msal_app(
            client_id,
            f"{authority.rstrip('/')}/{tenant_id}",
            secret=None,
            ca_file=ca_file,
            timeout=timeout,
        )
        scopes = graph_scopes(graph_base_url, app_only=False, read_only=read_only)
        flow = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            raise SourceError(f"Microsoft refused to start the sign-in: {_msal_error(flow)}")
        show(
            str(
                flow.get("message")
                or f"Open {flow['verification_uri']} and enter {flow['user_code']}"
            )
        )
        result = app.acquire_token_by_device_flow(flow)
    except (ValueError, requests.RequestException) as exc:
        raise SourceError(
            f"cannot use the sign-in service {authority}: {_short(str(exc))}"
        ) from None
    if "refresh_token" not in result:
        raise SourceError(f"the sign-in did not complete: {_msal_error(result)}")
    return str(result["refresh_token"])


# The newest refresh token Microsoft handed out (they rotate), in the calendar's namespace
# of the hub's state store: a new scheduler leader signs in with it, not the first one.
RENEWED_KEY = "renewed_refresh_token"


def token_file(settings: GraphSettings, ctx: SourceContext) -> Path:
    """Where hubs before the state store kept the newest refresh token, per calendar (moved
    into the store on first use)."""
    return ctx.state_path(settings.client_id, settings.user, prefix="graph-", suffix=".json")


class _SignIn:
    """Gets access tokens for one calendar with MSAL (blocking: called in worker threads)."""

    def __init__(self, settings: GraphSettings, ctx: SourceContext, where: str) -> None:
        self.settings = settings
        self.ctx = ctx
        self.where = where
        self.authority_url = f"{settings.authority}/{settings.tenant_id}"
        self.scopes = graph_scopes(
            settings.graph_base_url, app_only=settings.app_only, read_only=settings.read_only
        )
        self._app: msal.ClientApplication | None = None
        self.token_file = token_file(settings, ctx)

    def _secret(self, name: str) -> str | None:
        try:
            return self.ctx.secret(self.settings, name)
        except ConfigError as exc:
            raise SourceError(str(exc)) from None

    def _application(self) -> msal.ClientApplication:
        if self._app is None:
            secret = self._secret("client_secret")
            try:
                self._app = _msal_app(
                    self.settings.client_id,
                    self.authority_url,
                    secret=secret,
                    ca_file=self.settings.ca_file,
                    timeout=self.settings.timeout,
                )
            except ValueError as exc:
                # MSAL reads the tenant's OpenID configuration first: a wrong tenant ends here.
                raise SourceError(
                    f"Microsoft does not know the directory {self.settings.tenant_id!r} "
                    f"({self.authority_url}) for {self.where}: {_short(str(exc))}"
                ) from None
        return self._app

    def token(self) -> str:
        """A valid access token for Graph; SourceError saying why there is none."""
        try:
            app = self._application()
            if self.settings.app_only:
                assert isinstance(app, msal.ConfidentialClientApplication)
                result = app.acquire_token_for_client(scopes=self.scopes)
            else:
                configured = self._secret("refresh_token") or ""
                result = app.acquire_token_by_refresh_token(
                    self._refresh_token(configured), scopes=self.scopes
                )
                if "refresh_token" in result:
                    self._keep(configured, str(result["refresh_token"]))
        except requests.RequestException as exc:
            raise SourceError(
                f"cannot reach the Microsoft sign-in service {self.settings.authority} for "
                f"{self.where}: {_short(str(exc))}"
            ) from None
        if "access_token" not in result:
            raise SourceError(
                f"Microsoft refused the credentials for {self.where} "
                f"(app {self.settings.client_id}): {_msal_error(result)}"
            )
        return str(result["access_token"])

    def _refresh_token(self, configured: str) -> str:
        """The newest refresh token: the kept one if it derives from the configured one."""
        try:
            kept = self._kept()
        except SecretUnreadable as exc:
            # The configured token may still work; the key mismatch is worth fixing.
            log.warning("%s: %s", self.where, exc)
            return configured
        if kept.get("configured") == _digest(configured) and kept.get("refresh_token"):
            return str(kept["refresh_token"])
        return configured  # a new token was configured since: it wins

    def _kept(self) -> dict[str, Any]:
        """What _keep stored (in the hub's state store, where every instance finds it); the
        file of an earlier build is moved there first."""
        found = self.ctx.store.get_secret(self.ctx.namespace, RENEWED_KEY)
        if found is None:
            found = self._adopt_file()
        try:
            kept = json.loads(found) if found else {}
        except ValueError:
            return {}
        return kept if isinstance(kept, dict) else {}

    def _adopt_file(self) -> str | None:
        try:
            text = self.token_file.read_text("utf-8")
        except OSError:
            return None
        self.ctx.store.put_secret(self.ctx.namespace, RENEWED_KEY, text)
        with contextlib.suppress(OSError):
            self.token_file.unlink()
        log.info(
            "%s: moved the renewed refresh token from %s into the hub's database (encrypted)",
            self.where,
            self.token_file,
        )
        return text

    def _keep(self, configured: str, newest: str) -> None:
        kept = json.dumps({"configured": _digest(configured), "refresh_token": newest})
        try:
            self.ctx.store.put_secret(self.ctx.namespace, RENEWED_KEY, kept)
        except Exception as exc:  # a database or key problem: the sync itself went well
            # The configured token still works until it expires; say so, go on.
            log.warning("%s: cannot keep the new refresh token: %s", self.where, exc)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---- the source ---------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    code: str
    message: str


class GraphCalendarSource:
    """Implements hub.ports.calendar.CalendarSource for one Microsoft 365 / Outlook.com calendar."""

    settings_model: ClassVar[type[CalendarSettings]] = GraphSettings

    def __init__(self, settings: GraphSettings, ctx: SourceContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.name = ctx.name
        self._signin = _SignIn(settings, ctx, ctx.name)
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

    async def annotate(self, event: CalendarEvent, note: str) -> bool:
        """Append NOTE to the event's body (once); False when read_only."""
        if self.settings.read_only:
            return False
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
        graph_id = str(event.raw["id"])
        state.ids[graph_id] = event.key
        self._by_key[event.key] = graph_id

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
        items, delta_link = await self._round(state.delta_link, None)
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
        state.delta_link = delta_link
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
    return _Answer(response.status_code, code, _short(message))


def _retry_after(response: httpx.Response, default: float) -> float:
    """Seconds the server asks to wait (Retry-After in seconds), else DEFAULT."""
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


__all__ = [
    "GraphCalendarSource",
    "GraphSettings",
    "device_code_login",
    "event_key",
    "to_event",
    "zone_name",
]
