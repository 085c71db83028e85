"""On-premises Exchange Server calendars (2010 SP2 to Subscription Edition), through EWS.

Exchange Web Services are retired for Exchange Online (Microsoft 365): an Outlook calendar
in the cloud goes through the Microsoft Graph source (``type = "graph"``). This source is
for an Exchange Server run in-house, reached at ``https://SERVER/EWS/Exchange.asmx`` with
the login of a Windows account (``DOMAIN\\user`` or ``user@domain``), by NTLM (the default
on Exchange's EWS virtual directory) or Basic.

Reading: every sync is a full listing. ``FindItem`` with a ``CalendarView`` over the window
makes the server expand recurring series into their occurrences (and exceptions), which is
what reminders need; the properties that FindItem cannot return (body, attendees) come from
a ``GetItem`` on the ids it listed (exchangelib does both). EWS's incremental
``SyncFolderItems`` reports recurring masters only, never occurrences, so a delta would
have to expand the recurrence here from its ``Recurrence`` blob and exception lists: the
full view per sync is the reliable way and stays cheap at a clinic's volume, so the cursor
is always None. A view that comes back full (``page_size`` items) is split in halves and
asked again, since EWS truncates a CalendarView instead of paging it.

Keys: Exchange gives the occurrences of a series the series' iCalendar ``UID``; an
occurrence (or an exception, a moved occurrence) is told apart by its ``RecurrenceId`` (its
original start), as ``occurrence_id(...)``; a single appointment has occurrence "".

Times: EWS answers in UTC; each event is shown in the Windows zone it was created in
(``StartTimeZone``, such as "Romance Standard Time", turned into its IANA name), else in
``timezone``. All-day events are midnight to midnight in that zone.

exchangelib is blocking: every call runs in a worker thread, one at a time, with a deadline
(``sync_timeout``); each HTTP request has its own (``timeout``). Throttling
(``ErrorServerBusy`` with ``BackOffMilliseconds``) is waited out up to ``max_retry_wait``
seconds in all per sync, then the sync fails and is tried again at the next one.

Annotating appends the note to the item's body (an occurrence's body: Exchange then keeps it
as an exception of the series) with ``ConflictResolution="NeverOverwrite"`` and the
ChangeKey just read, so an edit made meanwhile in Outlook is never overwritten, and without
sending anything to the attendees. The account needs delegate access to the mailbox
(Reviewer to read, Editor to write notes) or impersonation rights.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests
from exchangelib import (
    DELEGATE,
    IMPERSONATION,
    Account,
    Build,
    Configuration,
    Credentials,
    EWSDateTime,
    Version,
)
from exchangelib import UTC as EWS_UTC
from exchangelib import errors as ews_errors
from exchangelib.items import NEVER_OVERWRITE, SEND_TO_NONE
from exchangelib.properties import Body, HTMLBody
from exchangelib.protocol import FaultTolerance, Protocol
from exchangelib.version import EXCHANGE_2010_SP2, EXCHANGE_2013_SP1, EXCHANGE_2016, EXCHANGE_2019
from pydantic import field_validator, model_validator

from connectors.calendar.base import ThreadedSource, short
from hub.errors import ConfigError, SourceError
from hub.mail.parse import html_to_text
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    CalendarSettings,
    EventStatus,
    NotNegative,
    SourceContext,
    SyncResult,
    SyncWindow,
    Timeout,
    ZoneSetting,
    between,
    occurrence_id,
    zone_name,
)

log = logging.getLogger("smshub.calendar.exchange")

T = TypeVar("T")

# The Exchange versions a hint may name, with the build exchangelib speaks to them.
_VERSIONS: dict[str, Build] = {
    "2010": EXCHANGE_2010_SP2,
    "2013": EXCHANGE_2013_SP1,
    "2016": EXCHANGE_2016,
    "2019": EXCHANGE_2019,
}
# What a sync asks of each item (FindItem lists ids, GetItem returns these).
_FIELDS = (
    "uid",
    "type",
    "subject",
    "start",
    "end",
    "is_all_day",
    "_start_timezone",
    "original_start",
    "recurrence_id",
    "location",
    "body",
    "required_attendees",
    "optional_attendees",
    "is_cancelled",
    "legacy_free_busy_status",
)
# A calendar view still full on a span this short is not split any further.
_MIN_SPLIT = timedelta(hours=1)
# Attempts to write a note when the item changes between reading and writing it.
_ANNOTATE_ATTEMPTS = 3
# Answers that mean the login may not open the calendar.
_ACCESS_DENIED = (
    ews_errors.ErrorAccessDenied,
    ews_errors.ErrorFolderNotFound,
    ews_errors.ErrorImpersonateUserDenied,
    ews_errors.ErrorImpersonationDenied,
)
# Answers that mean the EWS version asked is not the server's.
_WRONG_VERSION = (
    ews_errors.ErrorInvalidServerVersion,
    ews_errors.ErrorIncorrectSchemaVersion,
    ews_errors.ErrorInvalidSchemaVersionForMailboxVersion,
)


class ExchangeSettings(CalendarSettings):
    """Settings of an on-premises Exchange calendar (EWS)."""

    type: Literal["exchange"] = "exchange"
    # The mailbox whose calendar is read (its primary SMTP address).
    email: str
    # The Windows account that logs in: DOMAIN\user or user@domain (UPN).
    username: str
    password_env: str | None = None
    password_file: str | None = None
    # The server's host name (https://SERVER/EWS/Exchange.asmx), or the full EWS URL.
    server: str | None = None
    service_endpoint: str | None = None
    # "NTLM" is what Exchange's EWS directory accepts out of the box; "basic" where enabled.
    auth_type: Literal["NTLM", "basic", "digest"] = "NTLM"
    # Check the server's TLS certificate; ca_file: the PEM bundle of an in-house CA.
    verify_certificate: bool = True
    ca_file: str | None = None
    # The server's version, to skip the probe that asks it (2010, 2013, 2016, 2019; SE is 2019).
    version: Literal["2010", "2013", "2016", "2019"] | None = None
    # "delegate": the login has rights on the mailbox; "impersonation": a service account
    # with the ApplicationImpersonation role acts as the mailbox's owner.
    access_type: Literal["delegate", "impersonation"] = "delegate"
    # Zone of events whose own zone Exchange does not give (IANA or Windows name).
    timezone: ZoneSetting = None
    # Seconds to wait for one answer, and for a whole sync or annotation.
    timeout: Timeout = 30.0
    sync_timeout: Timeout = 300.0
    # Seconds of throttling back-off waited out per sync before giving up until the next one.
    max_retry_wait: NotNegative = 60.0
    # Items asked per calendar view (EWS's own limit is usually 1000).
    page_size: Annotated[int, between(10, 1000)] = 500
    # Never write answers back to the calendar.
    read_only: bool = False

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str) -> str:
        value = value.strip()
        if value.count("@") != 1 or value.startswith("@") or value.endswith("@"):
            raise ValueError(f"{value!r} is not an e-mail address (the mailbox's SMTP address)")
        return value

    @field_validator("username")
    @classmethod
    def _check_username(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("give the Windows login: DOMAIN\\user or user@domain")
        return value

    @field_validator("server")
    @classmethod
    def _check_server(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if "/" in value or not value:
            raise ValueError(
                "a host name only (mail.example.com); put a full URL in service_endpoint"
            )
        return value

    @field_validator("service_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "must be the EWS URL, such as https://mail.example.com/EWS/Exchange.asmx"
            )
        return value

    @model_validator(mode="after")
    def _check_where(self) -> ExchangeSettings:
        if bool(self.server) == bool(self.service_endpoint):
            raise ValueError(
                "give either server (the Exchange host name) or service_endpoint "
                "(https://…/EWS/Exchange.asmx), not both"
                if self.server
                else "give server (the Exchange host name) or service_endpoint "
                "(https://…/EWS/Exchange.asmx)"
            )
        if not (self.password_env or self.password_file):
            raise ValueError("give password_env or password_file (the Windows account's password)")
        return self

    @property
    def endpoint(self) -> str:
        """The EWS URL to post to."""
        return self.service_endpoint or f"https://{self.server}/EWS/Exchange.asmx"


# ---- exchangelib plumbing -----------------------------------------------------------------


class _Credentials(Credentials):
    """Credentials compared by identity.

    exchangelib shares one Protocol (its session pool and retry state) between equal
    (endpoint, credentials) pairs, process-wide; each source keeps its own, with its own
    timeout, TLS settings and retry budget, and drops it on close().
    """

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


class _Protocol(Protocol):
    """A Protocol whose sessions check TLS as configured (exchangelib's switch is global)."""

    verify: bool | str = True

    def create_session(self) -> Any:
        session = super().create_session()
        session.verify = self.verify
        return session


class _BoundedRetry(FaultTolerance):
    """FaultTolerance with a budget: at most MAX_WAIT seconds of back-off per operation.

    exchangelib's own policies either fail on the first ErrorServerBusy (FailFast) or wait
    out throttling for up to an hour; a sync must end well before the next one. A 401 is a
    refused login here: FaultTolerance would take it for throttling and retry it.
    """

    def __init__(self, max_wait: float) -> None:
        super().__init__(max_wait=max_wait)
        self.waited = 0.0

    def reset(self) -> None:
        """A new operation: a full budget again."""
        self.waited = 0.0
        self.back_off_until = None

    def back_off(self, seconds: float | None) -> None:
        wait = self.DEFAULT_BACKOFF if seconds is None else float(seconds)
        if self.waited + wait > self.max_wait:
            raise ews_errors.RateLimitError("the server keeps asking to back off", wait=wait)
        self.waited += wait
        super().back_off(wait)

    def raise_response_errors(self, response: Any) -> None:
        if response.status_code == 401 and b"locked out" not in (response.content or b""):
            raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
        super().raise_response_errors(response)


def _ews_time(value: datetime) -> EWSDateTime:
    """An aware datetime as the UTC EWSDateTime exchangelib wants."""
    utc = value.astimezone(UTC)
    return EWSDateTime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, tzinfo=EWS_UTC
    )


# ---- mapping ------------------------------------------------------------------------------


def _zone_of(item: Any, default: str) -> str:
    """The IANA name of the zone the item was created in, else DEFAULT."""
    zone = getattr(item, "_start_timezone", None)
    key = getattr(zone, "key", None)
    if not key:
        return default
    return zone_name(key) or default


def _local_day(value: datetime | date, zone: ZoneInfo) -> date:
    """The day an all-day boundary stands for in ZONE (rounded: "midnight give or take")."""
    if not isinstance(value, datetime):
        return value
    local = value.astimezone(zone)
    return (local + timedelta(hours=12)).date() if local.hour >= 12 else local.date()


def _plain(value: datetime, zone: ZoneInfo) -> datetime:
    """An aware EWSDateTime as a plain datetime in ZONE."""
    return datetime.fromtimestamp(value.timestamp(), zone)


def _body_text(body: object) -> str:
    if not body:
        return ""
    if isinstance(body, HTMLBody):
        return html_to_text(str(body), keep_quotes=True).text
    return str(body).strip()


def _attendees(item: Any) -> tuple[Attendee, ...]:
    found: list[Attendee] = []
    for attendee in [*(item.required_attendees or ()), *(item.optional_attendees or ())]:
        mailbox = getattr(attendee, "mailbox", None)
        if mailbox is None:
            continue
        email = mailbox.email_address or None
        name = mailbox.name or None
        if email or name:
            found.append(Attendee(email=email, name=name))
    return tuple(found)


def to_event(item: Any, default_zone: str) -> CalendarEvent:
    """An exchangelib CalendarItem (from a CalendarView) as a CalendarEvent.

    Raises ValueError when the item lacks what an event needs (a start).
    """
    if item.start is None:
        raise ValueError("no start time")
    zone_id = _zone_of(item, default_zone)
    zone = ZoneInfo(zone_id)
    all_day = bool(item.is_all_day)
    end: datetime | None
    if all_day:
        # exchangelib gives all-day bounds as dates, the end one inclusive.
        first = _local_day(item.start, zone)
        start = datetime.combine(first, time(), zone)
        if item.end is None:
            end = None
        elif isinstance(item.end, datetime):
            end = datetime.combine(_local_day(item.end, zone), time(), zone)
        else:
            end = datetime.combine(item.end + timedelta(days=1), time(), zone)
    else:
        start = _plain(item.start, zone)
        end = _plain(item.end, zone) if isinstance(item.end, datetime) else None
    if end is not None and end < start:
        end = start
    uid = str(item.uid or "")
    if not uid:
        raise ValueError("no UID (Exchange 2007 items have none)")
    occurrence = ""
    if item.type in ("Occurrence", "Exception"):
        original = item.recurrence_id or item.original_start
        if original is None:
            if item.type == "Exception":
                raise ValueError("a moved occurrence without its original start")
            original = item.start  # an unmoved occurrence starts where it always did
        # EWSDateTime refuses the stdlib's UTC: compute the key on a plain datetime.
        plain = _plain(original, ZoneInfo("UTC"))
        occurrence = occurrence_id(_local_day(plain, zone) if all_day else plain)
    if item.is_cancelled:
        status = EventStatus.CANCELLED
    elif item.legacy_free_busy_status == "Tentative":
        status = EventStatus.TENTATIVE
    else:
        status = EventStatus.CONFIRMED
    return CalendarEvent(
        uid=uid,
        occurrence=occurrence,
        start=start,
        end=end,
        timezone=zone_id,
        all_day=all_day,
        title=str(item.subject or "").strip(),
        location=str(item.location or "").strip(),
        description=_body_text(item.body),
        attendees=_attendees(item),
        status=status,
        etag=str(item.changekey or ""),
        raw={"id": item.id, "type": item.type},
    )


def _with_note(body: object, note: str) -> Body | HTMLBody:
    """BODY with NOTE appended, in the body's own format."""
    if isinstance(body, HTMLBody):
        content = str(body)
        addition = f"<p>{html.escape(note)}</p>"
        closing = re.search(r"</body\s*>", content, re.IGNORECASE)
        if closing:
            return HTMLBody(content[: closing.start()] + addition + content[closing.start() :])
        return HTMLBody(content + addition)
    text = str(body or "").rstrip()
    return Body(f"{text}\n\n{note}" if text else note)


# ---- the source ---------------------------------------------------------------------------


class ExchangeCalendarSource(ThreadedSource[ExchangeSettings]):
    """Implements hub.ports.calendar.CalendarSource for an on-premises Exchange calendar.

    exchangelib's account is not meant for concurrent use: its calls run one at a time in
    a worker thread, within ``sync_timeout``."""

    settings_model: ClassVar[type[CalendarSettings]] = ExchangeSettings

    def __init__(self, settings: ExchangeSettings, ctx: SourceContext) -> None:
        super().__init__(settings, ctx)
        self.endpoint = settings.endpoint
        self.host = urlsplit(self.endpoint).hostname or self.endpoint
        self._zone = settings.timezone or "UTC"
        self._retry = _BoundedRetry(settings.max_retry_wait)
        self._account: Account | None = None
        self._protocol: _Protocol | None = None
        self._folder: Any = None
        # (uid, occurrence) → (EWS item id, ChangeKey) of what the last sync listed.
        self._ids: dict[tuple[str, str], tuple[str, str]] = {}

    # -- protocol -------------------------------------------------------------------------
    # No state files: the sync state travels in the cursor, and autodiscover (whose cache
    # exchangelib would keep in a file) is not used.

    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        """The occurrences in WINDOW: always a full listing (see the module's docstring)."""
        return await self._call(self._sync, window, what="read the calendar")

    @property
    def read_only(self) -> bool:
        return self.settings.read_only

    async def _annotate(self, event: CalendarEvent, note: str) -> bool:
        """Append NOTE to the event's body; False when the event is gone."""
        return await self._call(self._write_note, event, note, what="write on an appointment")

    async def close(self) -> None:
        await asyncio.to_thread(self._shutdown)

    # -- threads and errors ---------------------------------------------------------------
    def _deadline(self) -> float:
        return self.settings.sync_timeout

    def _too_slow(self, what: str, deadline: float) -> str:
        return (
            f"{self.name}: the Exchange server {self.host} did not let us {what} within "
            f"{deadline:g} s (sync_timeout)"
        )

    def _before_call(self) -> None:
        self._retry.reset()

    def _translate(self, fn: Callable[..., T], *args: Any) -> T:
        """Run FN, turning exchangelib's errors into messages for whoever reads them."""
        try:
            return fn(*args)
        except SourceError:
            raise
        except (ews_errors.EWSError, requests.RequestException, OSError) as exc:
            said = self._account_refused(exc) or self._server_refused(exc) or self._not_reached(exc)
            raise SourceError(f"{self.name}: {said}") from None

    def _account_refused(self, exc: Exception) -> str | None:
        """What to say when the login or the mailbox is the problem (None: not that)."""
        s = self.settings
        where = f"the Exchange server {self.host}"
        if isinstance(exc, ews_errors.UnauthorizedError):
            self._drop()
            if "locked out" in str(exc):
                return (
                    f"the Windows account {s.username!r} is locked out on "
                    f"{self.host} (too many failed logins): ask the administrator to unlock it, "
                    "then check the password"
                )
            secret = (
                f"password_env {s.password_env}"
                if s.password_env
                else f"password_file {s.password_file}"
            )
            return (
                f"Exchange refused the login of {s.username!r} on {self.host}: "
                f"check the password ({secret}), the user name (DOMAIN\\user or user@domain) "
                f"and auth_type ({s.auth_type})"
            )
        if isinstance(exc, ews_errors.ErrorNonExistentMailbox):
            return (
                f"{where} has no mailbox {s.email!r}: check email "
                "(the mailbox's primary SMTP address)"
            )
        if isinstance(exc, ews_errors.ErrorNonPrimarySmtpAddress):
            return (
                f"{s.email!r} is not the primary address of its mailbox on "
                f"{self.host}: use that one ({short(exc)})"
            )
        if isinstance(exc, _ACCESS_DENIED):
            rights = (
                "the ApplicationImpersonation role"
                if s.access_type == "impersonation"
                else "delegate access to the calendar (Reviewer to read, Editor to write notes)"
            )
            return (
                f"{where} does not let {s.username!r} open the calendar of "
                f"{s.email!r} ({type(exc).__name__}: {short(exc)}): it needs {rights}"
            )
        return None

    def _server_refused(self, exc: Exception) -> str | None:
        """What to say when the server answered no (None: it did not)."""
        s = self.settings
        where = f"the Exchange server {self.host}"
        if isinstance(exc, (ews_errors.RateLimitError, ews_errors.ErrorServerBusy)):
            asked = getattr(exc, "wait", None) or getattr(exc, "back_off", None)
            wait = f" (it asked to wait {float(asked):g} s more)" if asked else ""
            return (
                f"{where} is throttling this account{wait}, beyond "
                f"max_retry_wait ({s.max_retry_wait:g} s): trying again at the next sync"
            )
        if isinstance(exc, ews_errors.ErrorTimeoutExpired):
            return self._timed_out(exc)
        if isinstance(exc, ews_errors.RedirectError):
            return (
                f"{self.endpoint} redirects to {exc.url}: set service_endpoint to "
                "the server's /EWS/Exchange.asmx URL"
            )
        if isinstance(exc, ews_errors.CASError):
            return f"{where} (its front end) refused: {short(exc.cas_error)}"
        if isinstance(exc, _WRONG_VERSION):
            hint = f"; version {s.version!r} is not what it runs: remove it" if s.version else ""
            return f"{where} refused the EWS version asked ({short(exc)}){hint}"
        if isinstance(exc, (ews_errors.MalformedResponseError, ews_errors.SOAPError)):
            status = re.search(r"Code: (\d{3})", str(exc))
            detail = f"HTTP {status.group(1)}" if status else short(exc, 160)
            return (
                f"{self.endpoint} did not answer as Exchange Web Services do "
                f"({detail}): check server / service_endpoint"
            )
        if isinstance(exc, ews_errors.ResponseMessageError):
            return f"{where} refused: {type(exc).__name__}: {short(exc)}"
        return None

    def _timed_out(self, exc: Exception) -> str:
        self._drop()
        where = f"the Exchange server {self.host}"
        if not str(exc).startswith("Reraised from"):
            # Exchange's own answer: the request took too long on its side.
            return f"{where} gave up on the request ({short(exc)}); trying again at the next sync"
        if "timeout" in str(exc).lower():
            return f"{where} did not answer within {self.settings.timeout:g} s ({self.endpoint})"
        return f"cannot reach {where} at {self.endpoint}: {_reason(exc)}"

    def _not_reached(self, exc: Exception) -> str:
        """What to say when the server could not be used at all."""
        where = f"the Exchange server {self.host}"
        if isinstance(exc, ews_errors.TransportError):
            self._drop()
            text = str(exc)
            if any(w in text for w in ("SSL", "certificate", "CERTIFICATE", "TLS")):
                return (
                    f"the TLS connection to {where} failed ({short(exc, 200)}): set "
                    "ca_file to the CA that signed its certificate (verify_certificate = false "
                    "only on a test server)"
                )
            return f"cannot use {where}: {short(exc)}"
        if isinstance(exc, ews_errors.EWSError):
            return f"{where} refused: {type(exc).__name__}: {short(exc)}"
        self._drop()
        return f"cannot reach {where} at {self.endpoint}: {_reason(exc)}"

    # -- connecting -----------------------------------------------------------------------
    def _connect(self) -> Any:
        """The calendar folder (GetFolder on first use)."""
        if self._folder is not None:
            return self._folder
        if self._account is None:
            self._account = self._make_account()
        self._folder = self._account.calendar
        return self._folder

    def _make_account(self) -> Account:
        s = self.settings
        try:
            password = self.ctx.secret(s, "password", required=True)
        except ConfigError as exc:
            raise SourceError(str(exc)) from None
        credentials = _Credentials(s.username, password)
        config = Configuration(
            service_endpoint=self.endpoint,
            credentials=credentials,
            auth_type=s.auth_type,
            version=Version(build=_VERSIONS[s.version]) if s.version else None,
            retry_policy=self._retry,
        )
        # Made first so that Account() finds it in exchangelib's protocol cache (keyed by
        # endpoint and credentials, ours unique) instead of making a plain Protocol.
        protocol = _Protocol(config=config)
        protocol.verify = s.ca_file or s.verify_certificate
        protocol.TIMEOUT = s.timeout
        self._protocol = protocol
        account = Account(
            primary_smtp_address=s.email,
            config=config,
            autodiscover=False,
            access_type=IMPERSONATION if s.access_type == "impersonation" else DELEGATE,
            # EWS answers in UTC whatever this is; it only frames the requests.
            default_timezone=EWS_UTC,
        )
        if account.protocol is not protocol:  # exchangelib changed how it caches protocols
            account.protocol = protocol
        return account

    def _drop(self) -> None:
        """Forget the connection after a login or transport failure: the next call starts anew."""
        self._shutdown()

    def _shutdown(self) -> None:
        protocol, self._protocol = self._protocol, None
        self._account = None
        self._folder = None
        if protocol is None:
            return
        cache = Protocol._protocol_cache
        with Protocol._protocol_cache_lock:
            for key, (cached, _) in list(cache.items()):
                if cached is protocol:
                    del cache[key]
        try:
            protocol.close()
        except Exception as exc:  # closing sockets must not hide the real outcome
            log.debug("%s: closing the EWS sessions: %s", self.name, exc)

    # -- reading --------------------------------------------------------------------------
    def _sync(self, window: SyncWindow) -> SyncResult:
        folder = self._connect()
        warnings: list[str] = []
        events: dict[tuple[str, str], CalendarEvent] = {}
        ids: dict[tuple[str, str], tuple[str, str]] = {}
        for item in self._view(folder, window.start, window.end, warnings):
            event = self._map(item, warnings)
            if event is None:
                continue
            events[event.key] = event
            ids[event.key] = (str(item.id), str(item.changekey or ""))
        self._ids = ids
        return SyncResult(events=list(events.values()), full=True, cursor=None, warnings=warnings)

    def _view(self, folder: Any, start: datetime, end: datetime, warnings: list[str]) -> list[Any]:
        """The items of a CalendarView from START to END, split while a view comes back full."""
        limit = self.settings.page_size
        spans = [(start, end)]
        found: dict[str, Any] = {}
        while spans:
            begin, until = spans.pop()
            query = folder.view(start=_ews_time(begin), end=_ews_time(until), max_items=limit)
            items = list(query.only(*_FIELDS))
            if len(items) >= limit:
                if until - begin > _MIN_SPLIT:
                    middle = begin + (until - begin) / 2
                    spans.extend([(middle, until), (begin, middle)])
                    continue
                warnings.append(
                    f"{self.name}: more than {limit} appointments between {begin:%Y-%m-%d %H:%M} "
                    f"and {until:%H:%M} UTC; some may be missing (raise page_size)"
                )
            for item in items:
                if isinstance(item, Exception):
                    warnings.append(f"{self.name}: Exchange could not give an appointment: {item}")
                    continue
                # An item across the middle of a split span is listed twice.
                found[str(item.id)] = item
        return list(found.values())

    def _map(self, item: Any, warnings: list[str]) -> CalendarEvent | None:
        try:
            return to_event(item, self._zone)
        except (ValueError, TypeError, AttributeError) as exc:
            label = item.subject or item.id
            warnings.append(f"{self.name}: Exchange appointment {label!r} skipped: {exc}")
            return None

    # -- writing --------------------------------------------------------------------------
    def _write_note(self, event: CalendarEvent, note: str) -> bool:
        folder = self._connect()
        assert self._account is not None
        ref = self._ids.get(event.key) or self._find(folder, event)
        if ref is None:
            log.info(
                "%s: %r is no longer in the calendar; nothing to write", self.name, event.title
            )
            return False
        for _ in range(_ANNOTATE_ATTEMPTS):
            found = list(
                self._account.fetch(ids=[(ref[0], None)], folder=folder, only_fields=["body"])
            )
            item = found[0] if found else None
            if item is None or isinstance(item, ews_errors.ErrorItemNotFound):
                log.info("%s: %r was deleted; nothing to write", self.name, event.title)
                return False
            if isinstance(item, Exception):
                raise item
            if note in _body_text(item.body):
                return True  # an earlier attempt got through
            item.body = _with_note(item.body, note)
            try:
                # NeverOverwrite with the ChangeKey just read: an edit made meanwhile wins
                # and the note is written again on top of it.
                item.save(
                    update_fields=["body"],
                    conflict_resolution=NEVER_OVERWRITE,
                    send_meeting_invitations=SEND_TO_NONE,
                )
            except ews_errors.ErrorIrresolvableConflict:
                continue
            except ews_errors.ErrorItemNotFound:
                return False
            return True
        raise SourceError(
            f"{self.name}: {event.title or event.uid!r} kept changing in Exchange while "
            f"writing {note!r}; trying again at the next sync"
        )

    def _find(self, folder: Any, event: CalendarEvent) -> tuple[str, str] | None:
        """EVENT's item id, looked for in a view around its start."""
        warnings: list[str] = []
        around = self._view(
            folder, event.start - timedelta(days=1), event.start + timedelta(days=1), warnings
        )
        for item in around:
            mapped = self._map(item, warnings)
            if mapped is not None and mapped.key == event.key:
                return str(item.id), str(item.changekey or "")
        return None


def _reason(exc: BaseException) -> str:
    """The last, most specific part of a wrapped connection error."""
    text = str(exc)
    text = re.sub(r"^Reraised from \w+\(", "", text).rstrip(")")
    for marker in _CONNECTION_FAILURES:
        if marker.lower() in text.lower():
            return marker
    return short(text, 200)


# What the operating system says, in the words worth showing (requests buries them deep).
_CONNECTION_FAILURES = (
    "Connection refused",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No route to host",
    "Network is unreachable",
    "Connection reset",
    "timed out",
)


__all__ = ["ExchangeCalendarSource", "ExchangeSettings", "to_event"]
