"""The calendar-source protocol and the normalized events every source emits.

A source (Google, Microsoft Graph, Exchange, ICS, CalDAV) only reads its calendar and turns
it into ``CalendarEvent`` occurrences; everything else (who gets an SMS, when, moved,
cancelled) is decided by hub.reminders from those events.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON
from pydantic import AfterValidator, BaseModel, ConfigDict

from hub.core.config import read_secret
from hub.errors import ConfigError
from hub.ports.state import MemoryStateStore, StateStore, calendar_namespace

log = logging.getLogger("smshub.calendars")


class CalendarSettings(BaseModel):
    """Base of each source's settings (stored with the calendar); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    type: str
    # Secrets the hub keeps encrypted in its database for this calendar (a password typed in
    # the console, the refresh token of a console sign-in), by name ("password"): the hub
    # gives them to the source like those of ``*_env`` / ``*_file`` settings.
    stored_secrets: list[str] = []

    def has_secret(self, key: str) -> bool:
        """True when KEY is given by KEY_env, KEY_file or the hub's store."""
        values = self.model_dump()
        return bool(
            values.get(f"{key}_env") or values.get(f"{key}_file") or key in self.stored_secrets
        )


def zone_name(name: str | None) -> str | None:
    """The IANA name for NAME (IANA, or a Windows name such as "Romance Standard Time")."""
    if not name:
        return None
    name = name.strip()
    candidate = WINDOWS_TO_OLSON.get(name, name)
    try:
        ZoneInfo(candidate)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return candidate


def zone_setting(lookup: Callable[[str], str | None] = zone_name) -> AfterValidator:
    """The check of a ``timezone`` setting: it becomes what LOOKUP gives (its IANA name);
    an error naming it when LOOKUP gives None."""

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        found = lookup(value)
        if found is None:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)")
        return found

    return AfterValidator(check)


def _more_than_zero(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0 seconds")
    return value


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def between(low: int, high: int) -> AfterValidator:
    """The check of a count setting (``page_size``): from LOW to HIGH, else an error saying so."""

    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return AfterValidator(check)


# Types of the settings several sources share (the fields stay in each source's settings).
# A time zone: an IANA name, or a Windows one ("Romance Standard Time") kept as its IANA name.
ZoneSetting = Annotated[str | None, zone_setting()]
# Seconds to wait (timeout, sync_timeout): more than 0.
Timeout = Annotated[float, AfterValidator(_more_than_zero)]
# Seconds (or days) that may be 0.
NotNegative = Annotated[float, AfterValidator(_not_negative)]


class EventStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Attendee:
    email: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class CalendarEvent:
    """One occurrence of an appointment, as a source sees it."""

    uid: str
    # Identifies the occurrence within a recurring series: the original start (RECURRENCE-ID)
    # as UTC ISO 8601, or "" for a single event.
    occurrence: str
    start: datetime  # aware; for all-day events, midnight in the calendar's time zone
    end: datetime | None = None
    timezone: str = "UTC"  # IANA name used to show and to apply local rules
    all_day: bool = False
    title: str = ""
    location: str = ""
    description: str = ""
    attendees: tuple[Attendee, ...] = ()
    status: EventStatus = EventStatus.CONFIRMED
    # The source's version marker (ETag, changeKey, updated time) when it has one.
    etag: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """(uid, occurrence): stable across syncs, moves and edits."""
        return self.uid, self.occurrence


@dataclass(frozen=True)
class Removed:
    """An occurrence (or with occurrence None, a whole series) that no longer exists."""

    uid: str
    occurrence: str | None = None


@dataclass
class SyncResult:
    """What one sync saw.

    ``full`` means ``events`` is the complete set of occurrences in the window: anything
    stored and not listed is gone. Otherwise it is a delta (changes since ``cursor``), and
    ``removed`` lists deletions explicitly.
    """

    events: list[CalendarEvent]
    removed: list[Removed] = field(default_factory=list)
    full: bool = True
    # Opaque state for the next incremental sync (Google syncToken, Graph deltaLink, CalDAV
    # sync-token, HTTP ETag...). None when the source has none.
    cursor: str | None = None
    # Problems that did not stop the sync (one malformed event in an ICS file...).
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SyncWindow:
    """Occurrences of interest: from ``start`` to ``end`` (recurrences are expanded within)."""

    start: datetime
    end: datetime


def calendar_source_name(calendar_name: str) -> str:
    """The name a calendar's source is given (``SourceContext.name``): it appears in the
    source's messages (and in the names of the files kept for a calendar not stored, such as
    a preview's, or by hubs before calendar ids)."""
    return f"calendar {calendar_name!r}"


@dataclass(frozen=True)
class StateFile:
    """A file a source keeps in the data directory for one calendar, between syncs."""

    path: Path
    # What it holds, in a few words for the user: "cached copy of the calendar"...
    what: str


@dataclass
class SourceContext:
    """What the hub gives a source."""

    name: str
    data_dir: Path
    # Secrets resolved by the hub (OAuth tokens, passwords), by setting name.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # The stored calendar's id (None for one that is not stored: `smshub calendar preview`):
    # the files its source keeps are named after it, so that renaming the calendar, or a
    # calendar of the same name in another account, changes nothing to them.
    calendar_id: int | None = None
    # Where the source keeps what it must remember between syncs and every instance must
    # see (a renewed refresh token), under ``namespace``; a calendar not stored gets one
    # in memory.
    store: StateStore = field(default_factory=MemoryStateStore)

    @property
    def namespace(self) -> str:
        """This calendar's namespace in ``store`` (deleted with the calendar)."""
        if self.calendar_id is None:
            return f"unsaved-{self.name}"
        return calendar_namespace(self.calendar_id)

    def state_path(self, *key: object, prefix: str = "", suffix: str = "") -> Path:
        """Where this calendar's source keeps a file: DATA_DIR/calendars/PREFIX{owner}-{tag}SUFFIX,
        the owner ``calendar-ID`` (a calendar not stored: its name, made safe) and the tag a
        digest of the owner and KEY (unique even for names that differ only in
        punctuation)."""
        if self.calendar_id is None:
            owner = self.name
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name).strip("_")[:60]
        else:
            owner = safe = f"calendar-{self.calendar_id}"
        tag = hashlib.sha256("\n".join([owner, *map(str, key)]).encode()).hexdigest()[:10]
        return self.data_dir / "calendars" / f"{prefix}{safe}-{tag}{suffix}"

    def name_keyed(self) -> SourceContext | None:
        """This context as hubs before calendar ids gave it: its source's files named after
        the calendar's name (None when it is this one: no id)."""
        return None if self.calendar_id is None else replace(self, calendar_id=None)

    def secret(self, settings: BaseModel, key: str, *, required: bool = False) -> str | None:
        """The secret KEY: as the hub resolved it, else read from SETTINGS' KEY_env / KEY_file.

        ConfigError naming the setting when that cannot be read, or, when REQUIRED, when
        neither is set.
        """
        found = self.secrets.get(key) or read_secret(settings, key, self.name)
        if required and not found:
            raise ConfigError(f"{self.name}: no {key} (set {key}_env or {key}_file)")
        return found


def move_name_keyed_files(
    ctx: SourceContext, state_files: Callable[[SourceContext], list[StateFile]]
) -> list[tuple[Path, Path]]:
    """Move the files the source of CTX's stored calendar keeps (STATE_FILES of CTX) from
    where hubs before calendar ids kept them (STATE_FILES of ``ctx.name_keyed()``, named
    after the calendar's name), each when only the old one exists, so that the upgrade loses
    no cached copy nor renewed token. Blocking (call it in a worker thread). A file that
    cannot be moved is logged and left: the source does without it. The (old, new) paths
    moved."""
    earlier = ctx.name_keyed()
    if earlier is None:
        return []
    try:
        now, before = state_files(ctx), state_files(earlier)
    except ConfigError:
        return []  # settings no longer valid: building the source says so
    moved = []
    # A source lists its files in the same order whatever the context.
    for new, old in zip(now, before, strict=False):
        if new.path == old.path or new.path.exists() or not old.path.is_file():
            continue
        try:
            new.path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old.path, new.path)
        except FileNotFoundError:
            continue  # moved by another sync meanwhile
        except OSError as exc:
            error = exc.strerror or str(exc)
            log.warning(
                "%s: cannot move its %s from %s to %s: %s",
                ctx.name,
                new.what,
                old.path,
                new.path,
                error,
            )
            continue
        log.info("%s: moved its %s from %s to %s", ctx.name, new.what, old.path, new.path)
        moved.append((old.path, new.path))
    return moved


@runtime_checkable
class CalendarSource(Protocol):
    """What every calendar connector implements."""

    settings_model: ClassVar[type[CalendarSettings]]

    async def sync(self, window: SyncWindow, cursor: str | None) -> SyncResult:
        """Read the calendar: a full listing when CURSOR is None, else changes since it.

        Raises CursorExpired when the cursor is refused, SourceError when the calendar cannot
        be read (the hub keeps what it had and tries again later).
        """
        ...

    async def annotate(self, event: CalendarEvent, note: str) -> bool:
        """Write NOTE on the event (confirmed/cancelled by the patient) where the source
        allows it; False when it is read-only."""
        ...

    async def close(self) -> None: ...

    @classmethod
    def state_files(cls, settings: Any, ctx: SourceContext) -> list[StateFile]:
        """The files a source with SETTINGS keeps under ``ctx.data_dir`` (a cached copy, a
        renewed token...), computed as the source computes them, whether they exist yet or
        not: the hub deletes them when the calendar is deleted. [] for a source that keeps
        nothing on disk."""
        ...


def occurrence_id(start: datetime | date) -> str:
    """The occurrence key for a recurrence start (UTC ISO 8601, or the date for all-day)."""
    if isinstance(start, datetime):
        from datetime import UTC

        if start.tzinfo is None:
            return start.isoformat()
        return start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return start.isoformat()
