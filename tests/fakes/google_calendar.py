"""A local stand-in for the Google Calendar API v3 (events) and Google's OAuth token endpoint.

A real HTTP server (stdlib, in a thread) speaking the documented wire format, so that the real
google-api-python-client and google-auth talk to it:

* ``GET /calendar/v3/calendars/{calendarId}/events`` with ``singleEvents``, ``timeMin`` /
  ``timeMax`` (RFC 3339 with an offset, filtering on end > timeMin and start < timeMax),
  ``maxResults``, ``pageToken`` → ``nextPageToken``, and on the last page ``nextSyncToken``;
  ``syncToken`` returns only what changed since, deleted events included (a deleted event
  only with its ``id``, a cancelled instance with ``id``, ``recurringEventId`` and
  ``originalStartTime``, as the API reference guarantees); ``syncToken`` with ``timeMin``,
  ``timeMax`` or ``iCalUID`` is a 400; an expired token is a 410 ``fullSyncRequired``.
* ``GET`` and ``PATCH .../events/{eventId}`` (patch semantics, ``If-Match`` → 412).
* ``POST /token``: the refresh-token grant (OAuth client) and the JWT-bearer grant (service
  account key, RS256 signature checked, ``sub`` recorded for domain-wide delegation), and the
  authorization-code grant of a web app (``redirect_uri`` and the PKCE ``code_verifier``
  checked against what the consent page was given); the client may authenticate in the
  form or with HTTP Basic.
* ``GET /o/oauth2/auth``: the consent page, which "consents" at once (or, with
  ``consent_error`` set, refuses) and redirects to the client's ``redirect_uri`` with
  ``code`` and ``state``, as Google does.
* ``GET /calendar/v3/users/me/calendarList``: the calendars (``timezones``; names from
  ``calendar_names``), the primary one marked.
* Errors in Google's JSON shape (``{"error": {"code", "message", "errors": [{"reason"}]}}``)
  and scripted failures (``fail_next``: a 403 ``rateLimitExceeded``, a 500...).

The calendar is in memory; tests add, move, cancel and delete events and series. With
``singleEvents=true`` (the only mode the hub uses) series masters are not listed, their
instances are, with ids ``{master}_{YYYYMMDDTHHMMSSZ}`` like Google's.

Not documented, so chosen here: deleting a whole series reports the master's id (cancelled)
in the next delta, not each instance; results are in creation order.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.mail_api import GmailMail
from tests.servers._util import BackgroundServer

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def google_error(code: int, message: str, reason: str, domain: str = "global") -> dict[str, Any]:
    """An error body as the Google APIs send it."""
    return {
        "error": {
            "errors": [{"domain": domain, "reason": reason, "message": message}],
            "code": code,
            "message": message,
        }
    }


@dataclass
class _Record:
    """One event (a single event, a series master or an instance) and its change number."""

    resource: dict[str, Any]
    calendar_id: str
    seq: int
    start: datetime
    end: datetime
    deleted: bool = False
    master: bool = False
    # Deleted with its series: reported through the master, not on its own.
    hidden: bool = False


@dataclass
class _Failure:
    status: int
    body: Any
    times: int = 1


@dataclass
class GoogleCalendarFake:
    """State of the fake Google Calendar; the server thread reads it under ``lock``."""

    url: str = ""
    # Requests without an Authorization header are accepted (AnonymousCredentials).
    allow_anonymous: bool = True
    timezones: dict[str, str] = field(default_factory=lambda: {"primary": "Europe/Paris"})
    records: dict[str, _Record] = field(default_factory=dict)
    # (method, path, query) of every API request, for assertions.
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    # OAuth clients: client_id -> (secret, refresh token); service accounts: email -> key.
    oauth_clients: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Who signs in through each client (the Google account whose mail a token reaches).
    oauth_users: dict[str, str] = field(default_factory=dict)
    service_accounts: dict[str, Any] = field(default_factory=dict)
    # Access tokens handed out -> what they were granted for.
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    # Names of the calendars in calendarList (default: the id).
    calendar_names: dict[str, str] = field(default_factory=dict)
    # The consent page's answer: None consents, else the OAuth error it redirects with.
    consent_error: str | None = None
    # Authorization codes handed out -> what the consent page was asked.
    auth_codes: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: int = 0
    # Sync tokens made before this generation are expired (410).
    _generation: int = 0
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _pages: dict[str, tuple[list[dict[str, Any]], int, str, str]] = field(default_factory=dict)
    # The records of each calendar, in the order they were added: a listing reads only its
    # calendar's, as Google's cost does not grow with other calendars (bench/reminders.py
    # serves 200 of them; scanning all 100,000 records for each first page was ~1 s of the
    # stand-in's CPU in both the hub's fetch and the bare one).
    _by_calendar: dict[str, dict[str, _Record]] = field(default_factory=dict)
    # The Gmail API's mailboxes (tests/fakes/mail_api.py), by the signed-in account.
    mail: GmailMail = field(default_factory=GmailMail)

    # -- scripting: the calendar -------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _zone(self, calendar_id: str, timezone: str | None) -> str:
        return timezone or self.timezones.get(calendar_id, "UTC")

    def _times(
        self, start: datetime | date, end: datetime | date | None, zone: str
    ) -> tuple[dict[str, str], dict[str, str], datetime, datetime]:
        if isinstance(start, datetime):
            assert start.tzinfo is not None, "give aware datetimes"
            stop = end if isinstance(end, datetime) else start + timedelta(hours=1)
            local = ZoneInfo(zone)
            return (
                {"dateTime": start.astimezone(local).isoformat(), "timeZone": zone},
                {"dateTime": stop.astimezone(local).isoformat(), "timeZone": zone},
                start,
                stop,
            )
        last = end if isinstance(end, date) else start + timedelta(days=1)
        tz = ZoneInfo(zone)
        return (
            {"date": start.isoformat()},
            {"date": last.isoformat()},
            datetime(start.year, start.month, start.day, tzinfo=tz),
            datetime(last.year, last.month, last.day, tzinfo=tz),
        )

    def _store(self, record: _Record) -> None:
        record.seq = self._next_seq()
        record.resource["etag"] = f'"{3181161784712000 + record.seq}"'
        record.resource["updated"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        self.records[record.resource["id"]] = record
        self._by_calendar.setdefault(record.calendar_id, {})[record.resource["id"]] = record

    def add_event(
        self,
        summary: str,
        start: datetime | date,
        end: datetime | date | None = None,
        *,
        calendar_id: str = "primary",
        timezone: str | None = None,
        description: str = "",
        location: str = "",
        attendees: list[dict[str, Any]] | None = None,
        ical_uid: str | None = None,
    ) -> str:
        """Add a single event; its id. Dates make an all-day event."""
        with self.lock:
            event_id = f"ev{next(self._ids):06d}"
            zone = self._zone(calendar_id, timezone)
            s, e, start_at, end_at = self._times(start, end, zone)
            resource: dict[str, Any] = {
                "kind": "calendar#event",
                "id": event_id,
                "status": "confirmed",
                "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "summary": summary,
                "start": s,
                "end": e,
                "iCalUID": ical_uid or f"{event_id}@google.com",
                "sequence": 0,
                "eventType": "default",
            }
            if description:
                resource["description"] = description
            if location:
                resource["location"] = location
            if attendees:
                resource["attendees"] = attendees
            self._store(_Record(resource, calendar_id, 0, start_at, end_at))
            return event_id

    def add_series(
        self,
        summary: str,
        first: datetime | date,
        count: int,
        every: timedelta = timedelta(weeks=1),
        *,
        calendar_id: str = "primary",
        timezone: str | None = None,
        description: str = "",
        duration: timedelta = timedelta(hours=1),
    ) -> tuple[str, list[str]]:
        """Add a recurring event with COUNT instances EVERY apart; (master id, instance ids).

        Timed instances keep their wall-clock time in the event's zone across DST changes,
        as an RRULE would.
        """
        with self.lock:
            zone = self._zone(calendar_id, timezone)
            master_id = f"ev{next(self._ids):06d}"
            uid = f"{master_id}@google.com"
            timed = isinstance(first, datetime)
            end = (first + duration) if timed else None
            s, e, start_at, end_at = self._times(first, end, zone)
            master = {
                "kind": "calendar#event",
                "id": master_id,
                "status": "confirmed",
                "summary": summary,
                "description": description,
                "start": s,
                "end": e,
                "recurrence": [f"RRULE:FREQ=DAILY;INTERVAL={every.days};COUNT={count}"],
                "iCalUID": uid,
                "sequence": 0,
            }
            self._store(_Record(master, calendar_id, 0, start_at, end_at, master=True))
            instance_ids = []
            for n in range(count):
                if isinstance(first, datetime):
                    local = first.astimezone(ZoneInfo(zone)).replace(tzinfo=None) + every * n
                    when: datetime | date = local.replace(tzinfo=ZoneInfo(zone))
                    assert isinstance(when, datetime)
                    suffix = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
                    stop: datetime | date | None = when + duration
                else:
                    when = first + every * n
                    suffix = when.strftime("%Y%m%d")
                    stop = None
                s, e, start_at, end_at = self._times(when, stop, zone)
                instance_id = f"{master_id}_{suffix}"
                resource = {
                    "kind": "calendar#event",
                    "id": instance_id,
                    "status": "confirmed",
                    "summary": summary,
                    "description": description,
                    "start": s,
                    "end": e,
                    "recurringEventId": master_id,
                    "originalStartTime": dict(s),
                    "iCalUID": uid,
                    "sequence": 0,
                }
                self._store(_Record(resource, calendar_id, 0, start_at, end_at))
                instance_ids.append(instance_id)
            return master_id, instance_ids

    def move(self, event_id: str, start: datetime, end: datetime | None = None) -> None:
        """Move an event or one instance (which keeps its originalStartTime)."""
        with self.lock:
            record = self.records[event_id]
            zone = record.resource["start"].get("timeZone") or self._zone(record.calendar_id, None)
            s, e, start_at, end_at = self._times(
                start, end or start + (record.end - record.start), zone
            )
            record.resource.update(start=s, end=e)
            record.resource["sequence"] += 1
            record.start, record.end = start_at, end_at
            self._store(record)

    def edit(self, event_id: str, **fields: Any) -> None:
        """Change fields (summary, description, location, status...) of an event."""
        with self.lock:
            record = self.records[event_id]
            record.resource.update(fields)
            self._store(record)

    def cancel_occurrence(self, instance_id: str) -> None:
        """Delete one instance of a series (it becomes a cancelled exception)."""
        with self.lock:
            record = self.records[instance_id]
            assert record.resource.get("recurringEventId"), "not an instance"
            record.resource["status"] = "cancelled"
            record.deleted = True
            self._store(record)

    def delete(self, event_id: str) -> None:
        """Delete a single event, or a whole series when EVENT_ID is its master."""
        with self.lock:
            record = self.records[event_id]
            record.resource["status"] = "cancelled"
            record.deleted = True
            if record.master:
                for other in self.records.values():
                    if other.resource.get("recurringEventId") == event_id:
                        other.deleted = other.hidden = True
            self._store(record)

    def event(self, event_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.records[event_id].resource)

    def expire_sync_tokens(self) -> None:
        """Make every sync token handed out so far invalid (the next use gets a 410)."""
        with self.lock:
            self._generation += 1

    def fail_next(self, status: int, reason: str, message: str = "", times: int = 1) -> None:
        """Answer the next TIMES API requests with STATUS and a Google error of REASON."""
        with self.lock:
            body = google_error(status, message or reason, reason, "usageLimits")
            self.failures.append(_Failure(status, body, times))

    # -- scripting: credentials --------------------------------------------------------------
    def oauth_client(self, client_id: str, secret: str, refresh_token: str) -> None:
        with self.lock:
            self.oauth_clients[client_id] = (secret, refresh_token)

    def revoke(self, client_id: str) -> None:
        """The user removes the app's access (Google account → Security → Third-party
        access): its refresh token answers invalid_grant, its access tokens are refused."""
        with self.lock:
            secret, _ = self.oauth_clients[client_id]
            self.oauth_clients[client_id] = (secret, f"revoked-{next(self._ids)}")
            for token in [
                t for t, g in self.access_tokens.items() if g.get("client_id") == client_id
            ]:
                del self.access_tokens[token]

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens.clear()

    def user_of(self, token: str) -> str | None:
        """The Google account of a live access token (for the mail servers' introspection)."""
        with self.lock:
            granted = self.access_tokens.get(token)
            return str(granted.get("email") or "") or None if granted else None

    def service_account_key(
        self, email: str = "reminders@smshub-test.iam.gserviceaccount.com"
    ) -> dict[str, Any]:
        """A new service account JSON key (as a dict) whose token_uri is this fake."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with self.lock:
            self.service_accounts[email] = key.public_key()
        return {
            "type": "service_account",
            "project_id": "smshub-test",
            "private_key_id": "0123456789abcdef",
            "private_key": pem,
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": f"{self.url}/token",
        }

    # -- the token endpoint ------------------------------------------------------------------
    def handle_token(self, form: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.token_requests.append(form)
            grant = form.get("grant_type")
            granted: dict[str, Any]
            if grant == "refresh_token":
                client = self.oauth_clients.get(form.get("client_id", ""))
                if client is None or client[0] != form.get("client_secret"):
                    return 401, {
                        "error": "invalid_client",
                        "error_description": "The OAuth client was not found.",
                    }
                if client[1] != form.get("refresh_token"):
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Token has been expired or revoked.",
                    }
                granted = {
                    "client_id": form["client_id"],
                    "email": self.oauth_users.get(form["client_id"], ""),
                }
            elif grant == "authorization_code":
                return self._exchange_code(form)
            elif grant == JWT_GRANT:
                try:
                    unverified = jwt.decode(
                        form.get("assertion", ""), options={"verify_signature": False}
                    )
                    public = self.service_accounts[unverified["iss"]]
                    claims = jwt.decode(
                        form["assertion"],
                        public,
                        algorithms=["RS256"],
                        # google-auth always names Google's endpoint as the audience.
                        audience="https://oauth2.googleapis.com/token",
                    )
                except (jwt.PyJWTError, KeyError):
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "Invalid JWT Signature.",
                    }
                granted = {
                    "iss": claims["iss"],
                    "sub": claims.get("sub"),
                    "scope": claims.get("scope"),
                }
            else:
                return 400, {"error": "unsupported_grant_type", "error_description": str(grant)}
            token = f"ya29.fake-{next(self._ids)}"
            self.access_tokens[token] = granted
            return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    # -- the consent page and the authorization-code grant -----------------------------------
    def handle_authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """(status, redirect location or error text) of the consent page."""
        with self.lock:
            client = self.oauth_clients.get(query.get("client_id", ""))
            redirect_uri = query.get("redirect_uri", "")
            if client is None or not redirect_uri:
                return 400, "Error 401: invalid_client (The OAuth client was not found.)"
            if query.get("response_type") != "code":
                return 400, "Error 400: unsupported_response_type"
            answer = {"state": query.get("state", "")}
            if self.consent_error is not None:
                answer["error"] = self.consent_error
            else:
                code = f"4/0Afake-{next(self._ids)}"
                self.auth_codes[code] = dict(query)
                answer = {"code": code, "scope": query.get("scope", ""), **answer}
            return 302, f"{redirect_uri}?{urlencode(answer)}"

    def _exchange_code(self, form: dict[str, str]) -> tuple[int, Any]:
        client = self.oauth_clients.get(form.get("client_id", ""))
        if client is None or client[0] != form.get("client_secret"):
            return 401, {
                "error": "invalid_client",
                "error_description": "The OAuth client was not found.",
            }
        asked = self.auth_codes.pop(form.get("code", ""), None)
        if asked is None or asked.get("client_id") != form.get("client_id"):
            return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
        if asked.get("redirect_uri") != form.get("redirect_uri"):
            return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
        challenge = asked.get("code_challenge")
        if challenge:
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != challenge:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "Invalid code verifier.",
                }
        token = f"ya29.fake-{next(self._ids)}"
        self.access_tokens[token] = {
            "client_id": form["client_id"],
            "scope": asked.get("scope"),
            "email": self.oauth_users.get(form["client_id"], ""),
        }
        return 200, {
            "access_token": token,
            "expires_in": 3599,
            "token_type": "Bearer",
            "scope": asked.get("scope", ""),
            "refresh_token": client[1],
        }

    def _calendar_list(self) -> tuple[int, Any]:
        items = [
            {
                "kind": "calendar#calendarListEntry",
                "id": calendar_id,
                "summary": self.calendar_names.get(calendar_id, calendar_id),
                "timeZone": zone,
                "accessRole": "owner",
                **({"primary": True} if calendar_id == "primary" else {}),
            }
            for calendar_id, zone in self.timezones.items()
        ]
        return 200, {"kind": "calendar#calendarList", "items": items}

    # -- the API -----------------------------------------------------------------------------
    def handle_gmail(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """/gmail/v1/users/me/...: as the account the bearer token was granted to."""
        with self.lock:
            self.requests.append((method, path, query))
            if self.failures:
                failure = self.failures[0]
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.pop(0)
                return failure.status, failure.body
            token = headers.get("authorization", "").removeprefix("Bearer ")
            granted = self.access_tokens.get(token)
            if granted is None or not granted.get("email"):
                return 401, google_error(401, "Invalid Credentials", "authError")
            rest = path.removeprefix("/gmail/v1/users/me/").split("/")
            return self.mail.handle(str(granted["email"]), method, rest, query, body)

    def handle_api(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, query))
            if self.failures:
                failure = self.failures[0]
                failure.times -= 1
                if failure.times <= 0:
                    self.failures.pop(0)
                return failure.status, failure.body
            auth = headers.get("authorization")
            if (
                auth is None
                and not self.allow_anonymous
                or (auth is not None and auth.removeprefix("Bearer ") not in self.access_tokens)
            ):
                return 401, {
                    "error": {
                        "code": 401,
                        "message": "Request had invalid authentication credentials. Expected "
                        "OAuth 2 access token, login cookie or other valid authentication "
                        "credential.",
                        "errors": [
                            {
                                "message": "Invalid Credentials",
                                "domain": "global",
                                "reason": "authError",
                                "location": "Authorization",
                                "locationType": "header",
                            }
                        ],
                        "status": "UNAUTHENTICATED",
                    }
                }
            if path == "/calendar/v3/users/me/calendarList" and method == "GET":
                return self._calendar_list()
            parts = path.split("/")
            # ["", "calendar", "v3", "calendars", ID, "events", (EVENT_ID)]
            if parts[:4] != ["", "calendar", "v3", "calendars"] or len(parts) < 6:
                return 404, google_error(404, "Not Found", "notFound")
            calendar_id = unquote(parts[4])
            if calendar_id not in self.timezones or parts[5] != "events":
                return 404, google_error(404, "Not Found", "notFound")
            if len(parts) == 6 and method == "GET":
                return self._list(calendar_id, query)
            if len(parts) == 7:
                record = self.records.get(unquote(parts[6]))
                if record is None or record.calendar_id != calendar_id or record.hidden:
                    return 404, google_error(404, "Not Found", "notFound")
                if method == "GET":
                    return 200, record.resource
                if method == "PATCH":
                    return self._patch(record, headers, body)
            return 405, google_error(405, "Method Not Allowed", "httpMethodNotAllowed")

    def _list(self, calendar_id: str, query: dict[str, str]) -> tuple[int, Any]:
        if query.get("singleEvents") != "true":
            # The hub always expands series; masters with RRULEs are not emulated.
            return 400, google_error(400, "the fake only serves singleEvents=true", "invalid")
        size = int(query.get("maxResults", "250"))
        if not 1 <= size <= 2500:
            return 400, google_error(400, "Invalid value for maxResults", "invalid")
        page_token = query.get("pageToken")
        if page_token:
            if page_token not in self._pages:
                return 400, google_error(400, "Invalid page token", "invalid")
            items, offset, sync_token, signature = self._pages.pop(page_token)
            if signature != json.dumps(
                {k: v for k, v in sorted(query.items()) if k != "pageToken"}
            ):
                return 400, google_error(400, "the page token is for another query", "invalid")
        else:
            answer = self._select(calendar_id, query)
            if isinstance(answer, tuple):
                return answer
            items, offset = answer, 0
            sync_token = f"CPDAlvWDx70CEPDAlvWD~{self._generation}~{self._seq}"
            signature = json.dumps({k: v for k, v in sorted(query.items()) if k != "pageToken"})
        page = items[offset : offset + size]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"p{self._seq}"',
            "summary": "Cabinet",
            "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "timeZone": self.timezones[calendar_id],
            "accessRole": "owner",
            "defaultReminders": [],
            "items": page,
        }
        if offset + size < len(items):
            token = f"pg{next(self._ids)}"
            self._pages[token] = (items, offset + size, sync_token, signature)
            body["nextPageToken"] = token
        else:
            body["nextSyncToken"] = sync_token
        return 200, body

    def _select(
        self, calendar_id: str, query: dict[str, str]
    ) -> list[dict[str, Any]] | tuple[int, Any]:
        """The items a first page is cut from, or an error answer."""
        records = list(self._by_calendar.get(calendar_id, {}).values())
        if "syncToken" in query:
            if any(k in query for k in ("timeMin", "timeMax", "iCalUID", "q", "updatedMin")):
                return 400, google_error(
                    400, "Sync token cannot be used with other request restrictions.", "invalid"
                )
            try:
                _, generation, seq = query["syncToken"].split("~")
                since = int(seq)
                if int(generation) != self._generation:
                    raise ValueError("expired")
            except ValueError:
                message = "Sync token is no longer valid, a full sync is required."
                return 410, google_error(410, message, "fullSyncRequired")
            found = []
            for r in records:
                if r.seq <= since or r.hidden or (r.master and not r.deleted):
                    continue
                if r.deleted:
                    tomb = {
                        "kind": "calendar#event",
                        "etag": r.resource["etag"],
                        "id": r.resource["id"],
                        "status": "cancelled",
                    }
                    if r.resource.get("recurringEventId"):
                        tomb["recurringEventId"] = r.resource["recurringEventId"]
                        tomb["originalStartTime"] = r.resource["originalStartTime"]
                    found.append(tomb)
                else:
                    found.append(copy.deepcopy(r.resource))
            return found
        low = high = None
        try:
            if "timeMin" in query:
                low = _rfc3339(query["timeMin"])
            if "timeMax" in query:
                high = _rfc3339(query["timeMax"])
        except ValueError as exc:
            return 400, google_error(400, f"Bad Request: {exc}", "badRequest")
        return [
            copy.deepcopy(r.resource)
            for r in records
            if not r.deleted
            and not r.master
            and (low is None or r.end > low)
            and (high is None or r.start < high)
        ]

    def _patch(self, record: _Record, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        expected = headers.get("if-match")
        if expected and expected != record.resource["etag"]:
            return 412, google_error(412, "Precondition Failed", "conditionNotMet")
        try:
            changes = json.loads(body or b"{}")
        except ValueError:
            return 400, google_error(400, "Parse Error", "parseError")
        for key, value in changes.items():
            if key == "extendedProperties":
                props = record.resource.setdefault("extendedProperties", {})
                for scope, values in value.items():
                    props.setdefault(scope, {}).update(values)
            else:
                record.resource[key] = value
        self._store(record)
        return 200, record.resource


def _rfc3339(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        # Google: "Must be an RFC3339 timestamp with mandatory time zone offset".
        raise ValueError(f"{value!r} has no time zone offset")
    return parsed


class _Handler(BaseHTTPRequestHandler):
    fake: GoogleCalendarFake
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: pytest shows what matters."""

    def _answer(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        if status == 429:  # rateLimitExceeded: Google says when to come back
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        if parts.path == "/token" and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            basic = headers.get("authorization", "")
            if basic.startswith("Basic "):
                # client_secret_basic: Google takes the client's credentials either way.
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
                form.setdefault("client_id", unquote(client_id))
                form.setdefault("client_secret", unquote(secret))
            self._answer(*self.fake.handle_token(form))
            return
        if parts.path == "/o/oauth2/auth" and method == "GET":
            status, where = self.fake.handle_authorize(query)
            self.send_response(status)
            if status == 302:
                self.send_header("Location", where)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                payload = where.encode()
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            return
        if parts.path.startswith("/gmail/v1/users/me/"):
            self._answer(*self.fake.handle_gmail(method, parts.path, query, headers, raw))
            return
        self._answer(*self.fake.handle_api(method, parts.path, query, headers, raw))

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802 - stdlib name
        self._dispatch("PATCH")


@pytest.fixture
def google_fake() -> Iterator[GoogleCalendarFake]:
    """A running fake Google Calendar API; its root URL is ``google_fake.url``."""
    fake = GoogleCalendarFake()
    handler = type("GoogleCalendarHandler", (_Handler,), {"fake": fake})
    with BackgroundServer(handler) as server:
        fake.url = server.url
        yield fake
