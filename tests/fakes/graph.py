"""A local stand-in for Microsoft Graph calendars and the Microsoft identity platform.

A real HTTPS server (stdlib, in a thread, with a self-signed certificate made for the test:
MSAL only accepts an https:// authority) speaking the documented wire formats, so that the
real MSAL and httpx talk to it:

* Identity: ``GET /{tenant}/v2.0/.well-known/openid-configuration``,
  ``POST /{tenant}/oauth2/v2.0/token`` (``client_credentials``, ``refresh_token`` — rotated on
  each use —, ``device_code``, ``authorization_code`` with its PKCE ``code_verifier``),
  ``POST /{tenant}/oauth2/v2.0/devicecode``; AADSTS errors in the OAuth2 JSON shape
  (``error``, ``error_description``, ``error_codes``). ``GET /{tenant}/oauth2/v2.0/authorize``
  is the sign-in page: ``authorize_user`` signs in at once (None: the user declines) and it
  redirects to ``redirect_uri`` with ``code`` and ``state``.
* Graph v1.0 under ``/v1.0``: ``/users/{user}`` or ``/me``, ``.../calendarView/delta`` (also
  under ``/calendars/{id}``) with ``startDateTime``/``endDateTime``, ``Prefer:
  odata.maxpagesize`` paging through ``@odata.nextLink`` (``$skiptoken``) up to
  ``@odata.deltaLink`` (``$deltatoken``); a delta token returns what changed since, items
  that left the view (deleted, moved out) as ``{"id", "@removed": {"reason": "deleted"}}``;
  an unknown delta token is ``410 SyncStateNotFound``. ``Prefer: outlook.timezone`` (IANA or
  Windows names) sets the zone of ``start``/``end``; all-day events always come as midnight
  dates, as Microsoft documents. ``GET``/``PATCH /events/{id}``, plain ``calendarView``,
  ``GET .../calendars`` (the mailbox's calendars, the first one the default).
* Errors in Graph's shape (``{"error": {"code", "message"}}``) and scripted throttling
  (``throttle_next``: 429 with ``Retry-After``).

Occurrences of a series have their own ``id`` and ``iCalUId`` (Graph's iCalUId "is different
for each occurrence"), ``seriesMasterId`` and ``originalStart`` (UTC); masters are not in a
calendar view. Not documented, so chosen here: the default page size (10), the ids' shape.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from tests.fakes.mail_api import GraphMail
from tests.servers._util import BackgroundServer

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def graph_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "fake"}}}


def aad_error(error: str, code: int, description: str) -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: fake\r\nTimestamp: now",
        "error_codes": [code],
    }


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, as PEM files in DIRECTORY."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smshub test stand-in")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "graph-fake.pem", directory / "graph-fake.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _zone(name: str) -> ZoneInfo:
    if name in ("UTC", "tzone://Microsoft/Utc"):
        return ZoneInfo("UTC")
    return ZoneInfo(WINDOWS_TO_OLSON.get(name, name))


def _graph_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.0000000")


@dataclass
class _Event:
    id: str
    user: str
    calendar_id: str
    subject: str
    start: datetime  # aware
    end: datetime
    zone: str  # originalStartTimeZone, as Outlook wrote it (Windows or IANA name)
    all_day: bool = False
    body: dict[str, str] = field(default_factory=lambda: {"contentType": "text", "content": ""})
    location: str = ""
    attendees: list[dict[str, Any]] = field(default_factory=list)
    type: str = "singleInstance"
    series_master_id: str | None = None
    original_start: datetime | None = None
    ical_uid: str = ""
    is_cancelled: bool = False
    deleted: bool = False
    categories: list[str] = field(default_factory=list)
    seq: int = 0
    change_key: str = ""

    def render(self, zone_label: str) -> dict[str, Any]:
        """The event as Graph returns it, times in ZONE_LABEL (the Prefer header's zone)."""
        if self.all_day:
            # "All day events always return midnight-to-midnight regardless of time zone."
            start = {"dateTime": f"{self.start.date()}T00:00:00.0000000", "timeZone": zone_label}
            end = {"dateTime": f"{self.end.date()}T00:00:00.0000000", "timeZone": zone_label}
        else:
            tz = _zone(zone_label)
            start = {"dateTime": _graph_time(self.start.astimezone(tz)), "timeZone": zone_label}
            end = {"dateTime": _graph_time(self.end.astimezone(tz)), "timeZone": zone_label}
        text = self.body.get("content", "")
        item: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.event",
            "@odata.etag": f'W/"{self.change_key}"',
            "id": self.id,
            "createdDateTime": "2024-01-02T10:00:00.0000000Z",
            "lastModifiedDateTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
            "changeKey": self.change_key,
            "categories": list(self.categories),
            "originalStartTimeZone": self.zone,
            "originalEndTimeZone": self.zone,
            "iCalUId": self.ical_uid,
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": self.subject,
            "bodyPreview": text[:255],
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": self.all_day,
            "isCancelled": self.is_cancelled,
            "isOrganizer": True,
            "seriesMasterId": self.series_master_id,
            "showAs": "free" if self.all_day else "busy",
            "type": self.type,
            "body": dict(self.body),
            "start": start,
            "end": end,
            "location": {
                "displayName": self.location,
                "locationType": "default",
                "uniqueIdType": "unknown",
            },
            "attendees": copy.deepcopy(self.attendees),
            "organizer": {"emailAddress": {"name": "Cabinet", "address": self.user}},
        }
        if self.original_start is not None:
            item["originalStart"] = self.original_start.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
        return item


@dataclass
class _View:
    """What a delta token stands for: a calendar view, as of change number SEQ."""

    user: str
    calendar_id: str
    start: datetime
    end: datetime
    seq: int
    in_view: frozenset[str]


@dataclass
class GraphFake:
    """State of the fake Graph + identity platform; the server thread reads it under ``lock``."""

    url: str = ""
    ca_file: str = ""
    tenant: str = TENANT
    # client_id -> secret (None: a public client, e.g. for the device code flow).
    clients: dict[str, str | None] = field(default_factory=dict)
    # refresh token -> (client_id, user)
    refresh_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    # access token -> (client_id, user or None when app-only)
    access_tokens: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # user -> calendar ids (the first is the default calendar)
    mailboxes: dict[str, list[str]] = field(default_factory=dict)
    # Mailboxes app-only tokens may not read (an application access policy).
    denied_to_apps: set[str] = field(default_factory=set)
    events: dict[str, _Event] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    # device_code -> (client_id, scope)
    device_codes: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Who "signs in" on the device code page (None: nobody yet, authorization_pending).
    device_user: str | None = None
    # Who signs in on the authorize page (None: the user declines consent).
    authorize_user: str | None = None
    # authorization code -> what the authorize page was asked, and who signed in.
    auth_codes: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _views: dict[str, _View] = field(default_factory=dict)
    _pages: dict[str, tuple[list[dict[str, Any]], int, str | None, str]] = field(
        default_factory=dict
    )
    _throttle: list[list[int]] = field(default_factory=list)
    # The mailboxes' mail (tests/fakes/mail_api.py).
    mail: GraphMail = field(default_factory=GraphMail)

    # -- scripting -------------------------------------------------------------------------
    def add_mailbox(self, user: str, *calendars: str) -> str:
        """Create USER's mailbox; the id of its default calendar."""
        with self.lock:
            default = f"AAMkAD{len(self.mailboxes):04d}-calendar"
            self.mailboxes[user] = [default, *calendars]
            return default

    def app(self, client_id: str, secret: str | None) -> None:
        with self.lock:
            self.clients[client_id] = secret

    def refresh_token_for(self, client_id: str, user: str) -> str:
        """A refresh token as if USER had signed in to CLIENT_ID."""
        with self.lock:
            token = f"0.AXoA-refresh-{next(self._ids)}"
            self.refresh_tokens[token] = (client_id, user)
            return token

    def _bump(self, event: _Event) -> None:
        self._seq += 1
        event.seq = self._seq
        event.change_key = f"DwAAABYAAAB{event.seq:08d}"
        self.events[event.id] = event

    def _new_id(self) -> str:
        return f"AAMkAGI2TG93AAA={next(self._ids):06d}"

    def add_event(
        self,
        user: str,
        subject: str,
        start: datetime | date,
        end: datetime | date | None = None,
        *,
        zone: str = "Romance Standard Time",
        body: str = "",
        body_type: str = "text",
        location: str = "",
        attendees: list[tuple[str, str]] | None = None,
        calendar_id: str | None = None,
    ) -> str:
        """Add an event (dates: all-day, midnight in ZONE); its id."""
        with self.lock:
            start_at, end_at, all_day = self._span(start, end, zone)
            event = _Event(
                id=self._new_id(),
                user=user,
                calendar_id=calendar_id or self.mailboxes[user][0],
                subject=subject,
                start=start_at,
                end=end_at,
                zone=zone,
                all_day=all_day,
                body={"contentType": body_type, "content": body},
                location=location,
                attendees=[_attendee(name, address) for name, address in attendees or []],
                ical_uid=f"040000008200E00074C5B7101A82E00800000000{next(self._ids):016X}",
            )
            self._bump(event)
            return event.id

    def _span(
        self, start: datetime | date, end: datetime | date | None, zone: str
    ) -> tuple[datetime, datetime, bool]:
        if isinstance(start, datetime):
            assert start.tzinfo is not None, "give aware datetimes"
            stop = end if isinstance(end, datetime) else start + timedelta(hours=1)
            return start, stop, False
        last = end if isinstance(end, date) else start + timedelta(days=1)
        tz = _zone(zone)
        return (
            datetime.combine(start, dt.time(), tz),
            datetime.combine(last, dt.time(), tz),
            True,
        )

    def add_series(
        self,
        user: str,
        subject: str,
        first: datetime,
        count: int,
        every: timedelta = timedelta(weeks=1),
        *,
        zone: str = "Romance Standard Time",
        body: str = "",
        duration: timedelta = timedelta(hours=1),
    ) -> tuple[str, list[str]]:
        """A recurring series (wall-clock time kept in ZONE); (master id, occurrence ids)."""
        with self.lock:
            master = _Event(
                id=self._new_id(),
                user=user,
                calendar_id=self.mailboxes[user][0],
                subject=subject,
                start=first,
                end=first + duration,
                zone=zone,
                body={"contentType": "text", "content": body},
                type="seriesMaster",
                ical_uid=f"040000008200E00074C5B7101A82E00800000000{next(self._ids):016X}",
            )
            self._bump(master)
            tz = _zone(zone)
            ids = []
            for n in range(count):
                local = first.astimezone(tz).replace(tzinfo=None) + every * n
                when = local.replace(tzinfo=tz)
                occurrence = _Event(
                    id=self._new_id(),
                    user=user,
                    calendar_id=master.calendar_id,
                    subject=subject,
                    start=when,
                    end=when + duration,
                    zone=zone,
                    body=dict(master.body),
                    type="occurrence",
                    series_master_id=master.id,
                    original_start=when,
                    # Graph: "This ID is different for each occurrence in a recurring series."
                    ical_uid=f"{master.ical_uid[:-8]}{when:%Y%m%d}",
                )
                self._bump(occurrence)
                ids.append(occurrence.id)
            return master.id, ids

    def move(self, event_id: str, start: datetime, end: datetime | None = None) -> None:
        with self.lock:
            event = self.events[event_id]
            event.end = end or start + (event.end - event.start)
            event.start = start
            if event.type == "occurrence":
                event.type = "exception"
            self._bump(event)

    def edit(self, event_id: str, **fields: Any) -> None:
        with self.lock:
            event = self.events[event_id]
            for key, value in fields.items():
                setattr(event, key, value)
            self._bump(event)

    def cancel_meeting(self, event_id: str) -> None:
        """The organizer cancelled: the event stays, with isCancelled (attendee's view)."""
        self.edit(event_id, is_cancelled=True)

    def delete(self, event_id: str) -> None:
        """Delete an event or occurrence; a series master takes its occurrences along."""
        with self.lock:
            event = self.events[event_id]
            event.deleted = True
            self._bump(event)
            if event.type == "seriesMaster":
                for other in list(self.events.values()):
                    if other.series_master_id == event_id and not other.deleted:
                        other.deleted = True
                        self._bump(other)

    def event(self, event_id: str) -> dict[str, Any]:
        with self.lock:
            return self.events[event_id].render("UTC")

    def expire_delta_tokens(self) -> None:
        """Forget every delta and skip token: their next use gets 410 SyncStateNotFound."""
        with self.lock:
            self._views.clear()
            self._pages.clear()

    def revoke(self, user: str) -> None:
        """USER withdraws consent (or an admin revokes their sessions): every refresh token
        and access token of theirs is refused from now on (invalid_grant)."""
        with self.lock:
            for store in (self.refresh_tokens, self.access_tokens):
                for token in [t for t, (_, u) in store.items() if u == user]:
                    del store[token]

    def expire_access_tokens(self) -> None:
        """Every access token handed out so far expires (refresh tokens stay good)."""
        with self.lock:
            self.access_tokens.clear()

    def user_of(self, token: str) -> str | None:
        """Whose live access token TOKEN is (for the mail servers' introspection)."""
        with self.lock:
            found = self.access_tokens.get(token)
            return found[1] if found else None

    def throttle_next(self, status: int = 429, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next TIMES Graph requests with STATUS and Retry-After."""
        with self.lock:
            self._throttle.append([status, retry_after, times])

    # -- identity platform -----------------------------------------------------------------
    def handle_identity(self, method: str, path: str, form: dict[str, str]) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        tenant = parts[0]
        if tenant not in (self.tenant, "common", "organizations", "consumers"):
            return 400, aad_error(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        base = f"{self.url}/{tenant}"
        rest = "/".join(parts[1:])
        if method == "GET" and rest == "v2.0/.well-known/openid-configuration":
            return 200, {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{self.url}/{self.tenant}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
            }
        if method == "GET" and rest == "oauth2/v2.0/authorize":
            return self._authorize(form)
        if method != "POST":
            return 404, {"error": "not_found"}
        with self.lock:
            self.token_requests.append(form)
            client_id = form.get("client_id", "")
            if client_id not in self.clients:
                return 400, aad_error(
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found in the "
                    f"directory '{tenant}'.",
                )
            if rest == "oauth2/v2.0/devicecode":
                code = f"DAQABAAEAAA-{next(self._ids)}"
                self.device_codes[code] = (client_id, form.get("scope", ""))
                user_code = f"F{next(self._ids):07d}"
                return 200, {
                    "device_code": code,
                    "user_code": user_code,
                    "verification_uri": "https://microsoft.com/devicelogin",
                    "expires_in": 900,
                    "interval": 5,
                    "message": "To sign in, use a web browser to open the page "
                    f"https://microsoft.com/devicelogin and enter the code {user_code} "
                    "to authenticate.",
                }
            if rest != "oauth2/v2.0/token":
                return 404, {"error": "not_found"}
            return self._token(form, client_id, tenant)

    def _token(self, form: dict[str, str], client_id: str, tenant: str) -> tuple[int, Any]:
        secret = self.clients[client_id]
        if secret is not None and form.get("client_secret") != secret:
            return 401, aad_error(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                f"is the client secret value, not the client secret ID, for a secret added "
                f"to app '{client_id}'.",
            )
        grant = form.get("grant_type")
        user: str | None
        if grant == "client_credentials":
            if tenant != self.tenant:
                return 400, aad_error(
                    "invalid_request",
                    90009,
                    "Application is requesting a token for itself. This scenario is supported "
                    "only if resource is specified using the GUID based App Identifier.",
                )
            user = None
        elif grant == "refresh_token":
            known = self.refresh_tokens.get(form.get("refresh_token", ""))
            if known is None or known[0] != client_id:
                return 400, aad_error(
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'refresh_token' or "
                    "'assertion' is not valid.",
                )
            user = known[1]
        elif grant == "authorization_code":
            asked = self.auth_codes.pop(form.get("code", ""), None)
            if asked is None or asked["client_id"] != client_id:
                return 400, aad_error(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token "
                    "has expired due to inactivity.",
                )
            if asked.get("redirect_uri") != form.get("redirect_uri"):
                return 400, aad_error(
                    "invalid_grant",
                    50148,
                    "The redirect_uri does not match the one used to "
                    "obtain the authorization code.",
                )
            challenge = asked.get("code_challenge")
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if challenge and base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                return 400, aad_error(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the "
                    "code_challenge supplied in the authorization request.",
                )
            user = asked["user"]
        elif grant == DEVICE_GRANT:
            if form.get("device_code") not in self.device_codes:
                return 400, aad_error("expired_token", 70020, "The provided value is expired.")
            if self.device_user is None:
                return 400, aad_error(
                    "authorization_pending", 70016, "The user has not yet authorized."
                )
            user = self.device_user
        else:
            return 400, aad_error("unsupported_grant_type", 70003, f"{grant!r}")
        access = f"eyJ0eXAiOiJKV1Qi.fake.{next(self._ids)}"
        self.access_tokens[access] = (client_id, user)
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": form.get("scope", ""),
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": access,
        }
        if user is not None:
            # Refresh tokens rotate: a new one with every answer (the old stays valid here).
            answer["refresh_token"] = self.refresh_token_for(client_id, user)
        return 200, answer

    def _authorize(self, query: dict[str, str]) -> tuple[int, Any]:
        """The sign-in page: (302, {"location": ...}) back to the app, or an error."""
        with self.lock:
            client_id = query.get("client_id", "")
            redirect_uri = query.get("redirect_uri", "")
            if client_id not in self.clients or not redirect_uri:
                return 400, aad_error(
                    "unauthorized_client",
                    700016,
                    f"Application with identifier '{client_id}' was not found.",
                )
            answer = {"state": query.get("state", "")}
            if self.authorize_user is None:
                answer["error"] = "access_denied"
                answer["error_description"] = "AADSTS65004: User declined to consent."
            else:
                code = f"0.AXoA-code-{next(self._ids)}"
                self.auth_codes[code] = {**query, "user": self.authorize_user}
                answer = {"code": code, **answer}
            return 302, {"location": f"{redirect_uri}?{urlencode(answer)}"}

    # -- Graph -----------------------------------------------------------------------------
    def handle_graph(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append((method, path, query, headers))
            if self._throttle:
                status, wait, times = self._throttle[0]
                self._throttle[0][2] = times - 1
                if times - 1 <= 0:
                    self._throttle.pop(0)
                return (
                    status,
                    graph_error("TooManyRequests", "Too many requests, please retry later."),
                    {"Retry-After": str(wait)},
                )
            token = headers.get("authorization", "").removeprefix("Bearer ")
            grant = self.access_tokens.get(token)
            if grant is None:
                return (
                    401,
                    graph_error(
                        "InvalidAuthenticationToken",
                        "IDX14100: JWT is not well formed." if token else "Access token is empty.",
                    ),
                    {},
                )
            parts = path.strip("/").split("/")[1:]  # without "v1.0"
            if parts[:1] == ["me"]:
                if grant[1] is None:
                    return (
                        400,
                        graph_error(
                            "BadRequest",
                            "/me request is only valid with delegated authentication flow.",
                        ),
                        {},
                    )
                user, rest = grant[1], parts[1:]
            elif parts[:1] == ["users"] and len(parts) >= 2:
                user, rest = unquote(parts[1]), parts[2:]
            else:
                return 400, graph_error("BadRequest", "Resource not found for the segment."), {}
            if user not in self.mailboxes:
                return (
                    404,
                    graph_error("ErrorInvalidUser", f"The requested user '{user}' is invalid."),
                    {},
                )
            if (grant[1] is None and user in self.denied_to_apps) or (
                grant[1] is not None and grant[1] != user
            ):
                return (
                    403,
                    graph_error(
                        "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                    ),
                    {},
                )
            if rest[:1] in (["mailFolders"], ["messages"], ["sendMail"]):
                return (*self.mail.handle(user, method, rest, query, body, self.url), {})
            calendar_id = self.mailboxes[user][0]
            if rest == ["calendars"] and method == "GET":
                calendars = [
                    {"id": c, "name": "Calendar" if n == 0 else c, "isDefaultCalendar": n == 0}
                    for n, c in enumerate(self.mailboxes[user])
                ]
                return 200, {"value": calendars}, {}
            if rest[:1] == ["calendars"] and len(rest) >= 2:
                calendar_id = unquote(rest[1])
                if calendar_id not in self.mailboxes[user]:
                    return (
                        404,
                        graph_error(
                            "ErrorItemNotFound",
                            "The specified object was not found in the store.",
                        ),
                        {},
                    )
                rest = rest[2:]
            prefer = _prefer(headers.get("prefer", ""))
            zone_label = prefer.get("outlook.timezone", "UTC")
            size = int(prefer.get("odata.maxpagesize", "10"))
            base = f"{self.url}{path}"
            if rest == ["calendarView", "delta"] and method == "GET":
                return (*self._delta(user, calendar_id, query, zone_label, size, base), {})
            if rest == ["calendarView"] and method == "GET":
                return (*self._view(user, calendar_id, query, zone_label, size, base), {})
            if rest[:1] == ["events"] and len(rest) == 2:
                event = self.events.get(unquote(rest[1]))
                if event is None or event.deleted or event.user != user:
                    return (
                        404,
                        graph_error(
                            "ErrorItemNotFound",
                            "The specified object was not found in the store.",
                        ),
                        {},
                    )
                if method == "GET":
                    return 200, event.render(zone_label), {}
                if method == "PATCH":
                    return (*self._patch(event, body, zone_label), {})
            return 400, graph_error("BadRequest", f"Unsupported request {method} {path}"), {}

    def _in_view(
        self, event: _Event, user: str, calendar_id: str, start: datetime, end: datetime
    ) -> bool:
        return (
            not event.deleted
            and event.type != "seriesMaster"
            and event.user == user
            and event.calendar_id == calendar_id
            and event.end > start
            and event.start < end
        )

    def _page(
        self,
        items: list[dict[str, Any]],
        offset: int,
        size: int,
        base: str,
        delta_token: str | None,
    ) -> tuple[int, Any]:
        page = items[offset : offset + size]
        answer: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
            "value": page,
        }
        if offset + size < len(items):
            skip = f"Mjk{next(self._ids)}"
            self._pages[skip] = (items, offset + size, delta_token, base)
            answer["@odata.nextLink"] = f"{base}?$skiptoken={quote(skip)}"
        elif delta_token is not None:
            answer["@odata.deltaLink"] = f"{base}?$deltatoken={quote(delta_token)}"
        return 200, answer

    def _window(self, query: dict[str, str]) -> tuple[datetime, datetime] | None:
        try:
            start = datetime.fromisoformat(query["startDateTime"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(query["endDateTime"].replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC)
        return start, end

    def _delta(
        self,
        user: str,
        calendar_id: str,
        query: dict[str, str],
        zone_label: str,
        size: int,
        base: str,
    ) -> tuple[int, Any]:
        if "$skiptoken" in query:
            saved = self._pages.pop(query["$skiptoken"], None)
            if saved is None:
                return 410, graph_error(
                    "SyncStateNotFound", "The sync state generation is not found."
                )
            items, offset, delta_token, base = saved
            return self._page(items, offset, size, base, delta_token)
        if "$deltatoken" in query:
            view = self._views.get(query["$deltatoken"])
            if view is None:
                return 410, graph_error(
                    "SyncStateNotFound", "The sync state generation is not found."
                )
            items = []
            present = set(view.in_view)
            for event in self.events.values():
                if event.seq <= view.seq or event.user != user or event.calendar_id != calendar_id:
                    continue
                if self._in_view(event, user, calendar_id, view.start, view.end):
                    items.append(event.render(zone_label))
                    present.add(event.id)
                elif event.id in present:
                    items.append(
                        {
                            "@odata.type": "#microsoft.graph.event",
                            "id": event.id,
                            "@removed": {"reason": "deleted"},
                        }
                    )
                    present.discard(event.id)
            start, end = view.start, view.end
        else:
            window = self._window(query)
            if window is None:
                return 400, graph_error(
                    "ErrorInvalidParameter",
                    "This request requires a time window specified by the query string "
                    "parameters StartDateTime and EndDateTime.",
                )
            start, end = window
            chosen = [
                e for e in self.events.values() if self._in_view(e, user, calendar_id, start, end)
            ]
            items = [e.render(zone_label) for e in chosen]
            present = {e.id for e in chosen}
        token = f"dt{next(self._ids)}"
        self._views[token] = _View(user, calendar_id, start, end, self._seq, frozenset(present))
        return self._page(items, 0, size, base, token)

    def _view(
        self,
        user: str,
        calendar_id: str,
        query: dict[str, str],
        zone_label: str,
        size: int,
        base: str,
    ) -> tuple[int, Any]:
        if "$skiptoken" in query:
            saved = self._pages.pop(query["$skiptoken"], None)
            if saved is None:
                return 400, graph_error("BadRequest", "Invalid skip token.")
            items, offset, _, base = saved
            return self._page(items, offset, size, base, None)
        window = self._window(query)
        if window is None:
            return 400, graph_error("ErrorInvalidParameter", "startDateTime/endDateTime needed")
        items = [
            e.render(zone_label)
            for e in self.events.values()
            if self._in_view(e, user, calendar_id, *window)
        ]
        return self._page(items, 0, size, base, None)

    def _patch(self, event: _Event, body: bytes, zone_label: str) -> tuple[int, Any]:
        try:
            changes = json.loads(body or b"{}")
        except ValueError:
            return 400, graph_error("BadRequest", "Unable to read JSON request payload.")
        if "body" in changes:
            event.body = {
                "contentType": changes["body"].get("contentType", event.body["contentType"]),
                "content": changes["body"].get("content", ""),
            }
        if "subject" in changes:
            event.subject = changes["subject"]
        if "categories" in changes:
            event.categories = list(changes["categories"])
        if event.type == "occurrence":
            event.type = "exception"
        self._bump(event)
        return 200, event.render(zone_label)


def _attendee(name: str, address: str) -> dict[str, Any]:
    return {
        "type": "required",
        "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
        "emailAddress": {"name": name, "address": address},
    }


def _prefer(value: str) -> dict[str, str]:
    """Preferences of a Prefer header: 'a="x", b=2' -> {"a": "x", "b": "2"}."""
    found = {}
    for part in value.split(","):
        if "=" in part:
            key, _, raw = part.strip().partition("=")
            found[key.strip()] = raw.strip().strip('"')
    return found


class _Handler(BaseHTTPRequestHandler):
    fake: GraphFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: pytest shows what matters."""

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        # Bytes: a message's MIME ($value); None: no body (202 of sendMail).
        raw = isinstance(body, bytes)
        payload = body if raw else b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if raw:
            self.send_header("Content-Type", "message/rfc822")
        elif body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path.startswith("/v1.0/"):
            # Several Prefer headers are one list of preferences.
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["prefer"] = ", ".join(self.headers.get_all("Prefer") or [])
            self._answer(*self.fake.handle_graph(method, parts.path, query, headers, raw))
            return
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        if method == "GET":
            form = query
        status, body = self.fake.handle_identity(method, parts.path, form)
        if status == 302:
            self.send_response(302)
            self.send_header("Location", body["location"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._answer(status, body)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("PATCH")


@pytest.fixture
def graph_fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphFake]:
    """A running fake Graph + identity platform over HTTPS; trust ``graph_fake.ca_file``."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("graph-tls"))
    fake = GraphFake()
    handler = type("GraphHandler", (_Handler,), {"fake": fake})
    server = BackgroundServer(handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    with server:
        fake.url = server.url.replace("http://", "https://")
        fake.ca_file = str(cert)
        yield fake
