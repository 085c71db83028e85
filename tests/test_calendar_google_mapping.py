"""The Google event mapping (connectors.calendar.google.to_event), rewritten for speed,
gives exactly what the first version gave for every kind of event resource: the first
version is kept below, verbatim but for its names, and both map the same varied events."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.calendar import google
from connectors.calendar.google import _HTML, _STATUS, GoogleCalendarSource, GoogleSettings
from hub.mail.parse import html_to_text
from hub.ports.calendar import (
    Attendee,
    CalendarEvent,
    EventStatus,
    SourceContext,
    occurrence_id,
)

# ---- the first version ---------------------------------------------------------------------


def _old_parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime (Google always gives an offset)."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _old_when(value: Mapping[str, Any], zone: ZoneInfo) -> tuple[datetime, bool]:
    """(aware start, all-day) of a Google start/end: dateTime, or a date at midnight in ZONE."""
    if value.get("dateTime"):
        return _old_parse_time(str(value["dateTime"])), False
    if value.get("date"):
        return datetime.combine(date.fromisoformat(str(value["date"])), dtime(), zone), True
    raise ValueError("it has neither dateTime nor date")


def _old_original_key(value: Mapping[str, Any]) -> str:
    """The occurrence key of an instance's originalStartTime."""
    if value.get("dateTime"):
        return occurrence_id(_old_parse_time(str(value["dateTime"])))
    if value.get("date"):
        return occurrence_id(date.fromisoformat(str(value["date"])))
    raise ValueError("originalStartTime has neither dateTime nor date")


def _old_text(description: str) -> str:
    """The plain text of a description (the Google Calendar web UI writes HTML)."""
    if _HTML.search(description):
        return html_to_text(description, keep_quotes=True).text
    return description.strip()


def _old_event_key(item: Mapping[str, Any]) -> tuple[str, str]:
    """(uid, occurrence) of a Google event resource."""
    uid = str(item.get("iCalUID") or item["id"])
    if item.get("recurringEventId") and item.get("originalStartTime"):
        return uid, _old_original_key(item["originalStartTime"])
    return uid, ""


def _old_to_event(item: Mapping[str, Any], calendar_zone: str) -> CalendarEvent:
    """A Google event resource as a CalendarEvent (ValueError when it cannot be placed)."""
    zone_name = google._zone(item.get("start", {}).get("timeZone")) or calendar_zone
    zone = ZoneInfo(zone_name)
    start, all_day = _old_when(item.get("start") or {}, zone)
    end = None
    if item.get("end"):
        end, _ = _old_when(item["end"], zone)
    if all_day:
        zone_name = calendar_zone
    start = start.astimezone(zone)
    if end is not None:
        end = max(end.astimezone(zone), start)
    uid, occurrence = _old_event_key(item)
    attendees = tuple(
        Attendee(email=a.get("email") or None, name=a.get("displayName") or None)
        for a in item.get("attendees") or ()
        # Meeting rooms are not people to remind, nor the calendar's owner or the organizer
        # (Google lists them among the attendees): a reminder greets the patient.
        if not (a.get("resource") or a.get("self") or a.get("organizer"))
    )
    return CalendarEvent(
        uid=uid,
        occurrence=occurrence,
        start=start,
        end=end,
        timezone=zone_name,
        all_day=all_day,
        title=str(item.get("summary") or "").strip(),
        location=str(item.get("location") or "").strip(),
        description=_old_text(str(item.get("description") or "")),
        attendees=attendees,
        status=_STATUS.get(str(item.get("status", "")), EventStatus.CONFIRMED),
        etag=str(item.get("etag") or item.get("updated") or ""),
        raw={"id": item["id"], "recurringEventId": item.get("recurringEventId")},
    )


# ---- varied events ---------------------------------------------------------------------------

TIMES: list[Any] = [
    {"dateTime": "2025-03-10T09:00:00+01:00", "timeZone": "Europe/Paris"},
    {"dateTime": "2025-03-10T08:00:00Z"},
    {"dateTime": "2025-03-10T08:00:00.250Z", "timeZone": "America/New_York"},
    {"dateTime": "2025-03-30T02:30:00", "timeZone": "Europe/Paris"},  # no offset
    {"dateTime": "2025-10-26T02:30:00+02:00", "timeZone": "Not/AZone"},
    {"dateTime": "2025-03-10T10:00:00-05:00", "timeZone": ""},
    {"dateTime": "not a time"},
    {"date": "2025-03-10"},
    {"date": "2025-03-10", "timeZone": "Asia/Tokyo"},
    {"date": "2025-02-30"},
    {"dateTime": "", "date": "2025-03-11"},
    {},
    {"timeZone": "Europe/Paris"},
    None,
    "MISSING",
]
ENDS: list[Any] = [
    {"dateTime": "2025-03-10T09:30:00+01:00", "timeZone": "Europe/Paris"},
    {"dateTime": "2025-03-10T07:00:00Z"},  # before most starts
    {"date": "2025-03-11"},
    {"date": "2025-03-09"},
    {},
    {"dateTime": "garbage"},
    None,
    "MISSING",
]
ATTENDEES: list[Any] = [
    "MISSING",
    None,
    [],
    [{"email": "patient@example.com", "displayName": "Ms Patient"}],
    [
        {"email": "room@resource.calendar.google.com", "resource": True},
        {"email": "me@example.com", "self": True, "displayName": "Me"},
        {"email": "boss@example.com", "organizer": True},
        {"displayName": "No mail"},
        {"email": "", "displayName": ""},
        {"email": "x@example.com", "resource": False, "self": False, "organizer": False},
    ],
]
DESCRIPTIONS: list[Any] = [
    "MISSING",
    None,
    "",
    "  Tel: 06 12 34 56 78  \n",
    "<p>Tel: <b>06 12 34 56 78</b></p><br>Merci",
    "1 < 2 and 3 > 2",
    42,
]
STATUSES: list[Any] = ["MISSING", "confirmed", "tentative", "cancelled", "weird", None]
KEYS: list[dict[str, Any]] = [
    {"id": "ev1", "iCalUID": "ev1@google.com"},
    {"id": "ev2"},
    {"id": "ev3", "iCalUID": ""},
    {"iCalUID": "no-id@google.com"},
    {
        "id": "ser_20250310T080000Z",
        "iCalUID": "ser@google.com",
        "recurringEventId": "ser",
        "originalStartTime": {"dateTime": "2025-03-10T09:00:00+01:00"},
    },
    {
        "id": "ser_20250310",
        "iCalUID": "ser@google.com",
        "recurringEventId": "ser",
        "originalStartTime": {"date": "2025-03-10"},
    },
    {"id": "ser_x", "recurringEventId": "ser", "originalStartTime": {}},
    {"id": "ser_y", "recurringEventId": "ser"},
]
TEXTS: list[Any] = ["MISSING", None, "", "  RDV  ", 7]
VERSIONS: list[dict[str, Any]] = [
    {},
    {"etag": '"31"'},
    {"updated": "2025-03-01T00:00:00.000Z"},
    {"etag": "", "updated": "2025-03-01T00:00:00.000Z"},
]


def _event(rng: random.Random) -> dict[str, Any]:
    item: dict[str, Any] = dict(rng.choice(KEYS))
    for name, choices in (
        ("start", TIMES),
        ("end", ENDS),
        ("attendees", ATTENDEES),
        ("description", DESCRIPTIONS),
        ("status", STATUSES),
        ("summary", TEXTS),
        ("location", TEXTS),
    ):
        value = rng.choice(choices)
        if value != "MISSING":
            item[name] = value
    item.update(rng.choice(VERSIONS))
    return item


def _outcome(fn: Any, item: Mapping[str, Any], zone: str) -> Any:
    """What FN made of ITEM: every field (the zones of the times too), or the error."""
    try:
        event = fn(item, zone)
    except Exception as exc:  # the same refusal is part of the same behaviour
        return type(exc), str(exc)
    fields = {name: getattr(event, name) for name in CalendarEvent.__dataclass_fields__}
    for name in ("start", "end"):
        value = fields[name]
        if value is not None:
            fields[name] = (value, value.tzinfo, value.utcoffset(), value.fold)
    return fields


@pytest.mark.parametrize("zone", ["Europe/Paris", "UTC", "Pacific/Auckland"])
def test_the_mapping_gives_what_the_first_version_gave(zone: str) -> None:
    rng = random.Random(f"google-mapping-{zone}")
    for _ in range(4000):
        item = _event(rng)
        assert _outcome(google.to_event, item, zone) == _outcome(_old_to_event, item, zone), item


def test_the_event_key_is_what_it_was() -> None:
    for item in KEYS:
        assert google.event_key(item) == _old_event_key(item)


# ---- the partial response asks for every field read -------------------------------------------


def _field_paths(mask: str) -> set[str]:
    """The dotted paths a ``fields`` mask selects ("items(id,start(date))" -> items.id...)."""
    paths: set[str] = set()

    def read(at: int, prefix: str) -> int:
        name = ""
        while at < len(mask):
            char = mask[at]
            if char == "(":
                at = read(at + 1, f"{prefix}{name}.")
                name = ""
            elif char in ",)":
                if name:
                    paths.add(prefix + name)
                name = ""
                if char == ")":
                    return at + 1
                at += 1
            else:
                name += char
                at += 1
        if name:
            paths.add(prefix + name)
        return at

    read(0, "")
    # An object whose members are selected is there too ("items", "items.start").
    return paths | {p.rsplit(".", 1)[0] for p in paths if "." in p} | {"items"}


class _Recording(dict[str, Any]):
    """A JSON object that notes the path of every key read from it (into SEEN)."""

    def __init__(self, data: Mapping[str, Any], path: str, seen: set[str]) -> None:
        super().__init__(data)
        self.path, self.seen = path, seen

    def _wrap(self, key: str, value: Any) -> Any:
        self.seen.add(self.path + key)
        if isinstance(value, dict):
            return _Recording(value, f"{self.path}{key}.", self.seen)
        if isinstance(value, list):
            return [
                _Recording(v, f"{self.path}{key}.", self.seen) if isinstance(v, dict) else v
                for v in value
            ]
        return value

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._wrap(key, super().get(key, default))

    def __getitem__(self, key: str) -> Any:
        return self._wrap(key, super().__getitem__(key))


FULL_ITEM: dict[str, Any] = {
    "kind": "calendar#event",
    "etag": '"31"',
    "id": "ser_20250310T080000Z",
    "status": "confirmed",
    "htmlLink": "https://www.google.com/calendar/event?eid=x",
    "created": "2025-03-01T00:00:00.000Z",
    "updated": "2025-03-01T00:00:00.000Z",
    "summary": "RDV",
    "description": "<p>Tel: 06 12 34 56 78</p>",
    "location": "Cabinet",
    "creator": {"email": "me@example.com", "self": True},
    "organizer": {"email": "me@example.com", "self": True},
    "start": {"dateTime": "2025-03-10T09:00:00+01:00", "timeZone": "Europe/Paris"},
    "end": {"dateTime": "2025-03-10T09:30:00+01:00", "timeZone": "Europe/Paris"},
    "recurringEventId": "ser",
    "originalStartTime": {"dateTime": "2025-03-10T09:00:00+01:00", "timeZone": "Europe/Paris"},
    "iCalUID": "ser@google.com",
    "sequence": 0,
    "attendees": [
        {"email": "p@example.com", "displayName": "P", "responseStatus": "accepted"},
        {"email": "room@resource.calendar.google.com", "resource": True},
        {"email": "me@example.com", "self": True, "organizer": True},
    ],
    "reminders": {"useDefault": True},
    "eventType": "default",
}


def test_events_list_asks_for_every_field_the_source_reads(tmp_path: Path) -> None:
    allowed = _field_paths(google.LIST_FIELDS)
    assert "items.start.dateTime" in allowed and "nextSyncToken" in allowed
    seen: set[str] = set()
    all_day = {**FULL_ITEM, "start": {"date": "2025-03-10"}, "end": {"date": "2025-03-11"}}
    cancelled = {
        "id": "ser_20250311T080000Z",
        "status": "cancelled",
        "recurringEventId": "ser",
        "originalStartTime": {"date": "2025-03-11"},
    }
    items = [FULL_ITEM, all_day, {**FULL_ITEM, "start": {}}, cancelled, {"id": "gone"}]
    pages = [
        {"kind": "calendar#events", "items": items[:2], "nextPageToken": "p2"},
        {"timeZone": "Europe/Paris", "items": items[2:], "nextSyncToken": "s1", "etag": '"p"'},
    ]
    settings = GoogleSettings(anonymous=True, api_endpoint="http://127.0.0.1:9/")
    source = GoogleCalendarSource(settings, SourceContext(name="c", data_dir=tmp_path))
    source._pages = lambda **query: iter(  # type: ignore[method-assign]
        [_Recording(page, "", seen) for page in pages]
    )
    events, token = source._list_events([], timeMin="2025-03-01T00:00:00Z")
    assert token == "s1" and len(events) == 2
    listed, _, _ = source._list(timeMin="2025-03-01T00:00:00Z")
    state = google._State("s1", datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    state.series["ser"] = "ser@google.com"
    for item in listed:
        if item.get("status") == "cancelled" or item.get("id") == "gone":
            source._forget(state, item)
        google.event_key(item)
    assert "items.attendees.organizer" in seen and "items.originalStartTime.date" in seen
    assert seen - allowed == set()
