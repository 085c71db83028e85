"""What the database holds for one calendar's planning, read in a few Core statements.

The planner reads a calendar's occurrences and reminders once per sync (no ORM objects, no
per-occurrence query), and the outbox rows behind the reminders it may replace once per
chunk of changed occurrences.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, select

from hub.core.timeutil import as_utc
from hub.ports.calendar import CalendarEvent, EventStatus
from hub.store.db import member, table
from hub.store.models import CalendarEventRow, Message, Reminder

EVENTS = table(CalendarEventRow)
REMINDERS = table(Reminder)
MESSAGES = table(Message)

# What an occurrence's row says about its event; equal to the synced event's -> unchanged.
COMPARED = (
    "start",
    "end",
    "timezone",
    "all_day",
    "title",
    "location",
    "description",
    "attendees",
    "status",
    "etag",
)
# The fields the recipient (number, name) is found in.
RECIPIENT_FIELDS = ("title", "location", "description", "attendees")
_IDS_PER_QUERY = 1000
_STATUS_VALUES = {status: status.value for status in EventStatus}


def event_values(event: CalendarEvent) -> dict[str, Any]:
    """The row columns of COMPARED for EVENT, as the planner stores them."""
    return {
        "start": as_utc(event.start),
        "end": as_utc(event.end) if event.end else None,
        "timezone": event.timezone,
        "all_day": event.all_day,
        "title": event.title[:500],
        "location": event.location[:500],
        "description": event.description,
        "attendees": json.dumps([{"email": a.email, "name": a.name} for a in event.attendees])
        if event.attendees
        else "[]",  # json.dumps([]), without its cost for the usual appointment
        # An enum's .value is a property call; the statuses' values are looked up.
        "status": _STATUS_VALUES[event.status]
        if type(event.status) is EventStatus
        else event.status.value,
        "etag": event.etag[:255],
    }


# NamedTuples, not frozen dataclasses: a re-sync builds one per stored occurrence and
# reminder (100,000s), and a frozen dataclass's __init__ costs ~5x a tuple's.
class StoredEvent(NamedTuple):
    """An occurrence's row as last written."""

    id: int
    uid: str
    occurrence: str
    values: dict[str, Any]
    phone: str | None
    person: str
    problem: str
    deleted: bool
    person_source: str = ""


class StoredReminder(NamedTuple):
    id: int
    event_id: int
    rule: str
    status: str
    for_start: datetime
    message_id: str | None
    # The outbox row's status (None: no row), as read at the start of the sync.
    message_status: str | None


@dataclass
class CalendarState:
    """A calendar's rows and its reminders that planning looks at."""

    rows: dict[tuple[str, str], StoredEvent] = field(default_factory=dict)
    # (event id, rule) -> the latest scheduled or sent reminder: the one planning compares.
    current: dict[tuple[int, str], StoredReminder] = field(default_factory=dict)
    # event id -> its scheduled reminders (cancelled with the appointment).
    scheduled: dict[int, list[StoredReminder]] = field(default_factory=dict)
    # (event id, rule, start) of the skipped ones: a skip is recorded once.
    skipped: set[tuple[int, str, datetime]] = field(default_factory=set)
    # Scheduled reminders whose message is no longer queued: they went out (or were
    # cancelled by hand); recorded as sent.
    went_out: list[int] = field(default_factory=list)


# load_state's statements, built once (each sync runs them; building them cost more than
# running them on a calendar with few rows).
_EVENT_ROWS = select(
    EVENTS.c.id,
    EVENTS.c.uid,
    EVENTS.c.occurrence,
    EVENTS.c.phone,
    EVENTS.c.person,
    EVENTS.c.problem,
    EVENTS.c.deleted,
    EVENTS.c.person_source,
    *(EVENTS.c[name] for name in COMPARED),
).where(EVENTS.c.calendar_id == bindparam("calendar_id"))
_REMINDER_ROWS = (
    select(
        REMINDERS.c.id,
        REMINDERS.c.event_id,
        REMINDERS.c.rule,
        REMINDERS.c.status,
        REMINDERS.c.for_start,
        REMINDERS.c.message_id,
        MESSAGES.c.status.label("message_status"),
    )
    .select_from(
        REMINDERS.join(EVENTS, EVENTS.c.id == REMINDERS.c.event_id).outerjoin(
            MESSAGES, MESSAGES.c.id == REMINDERS.c.message_id
        )
    )
    .where(
        EVENTS.c.calendar_id == bindparam("calendar_id"),
        REMINDERS.c.status.in_(["scheduled", "sent", "skipped"]),
    )
    .order_by(REMINDERS.c.id)
)


def load_state(conn: Connection, calendar_id: int) -> CalendarState:
    """CALENDAR_ID's occurrences and live reminders, in two statements."""
    state = CalendarState()
    params = {"calendar_id": calendar_id}
    # One fetch: iterating row by row costs more than the rows' columns.
    rows = conn.execute(_EVENT_ROWS, params).all()
    for row in rows:
        values = dict(zip(COMPARED, row[8:], strict=True))
        values["start"] = as_utc(values["start"])
        if values["end"] is not None:
            values["end"] = as_utc(values["end"])
        state.rows[(row[1], row[2])] = StoredEvent(row[0], row[1], row[2], values, *row[3:8])
    for r in conn.execute(_REMINDER_ROWS, params).all():
        reminder = StoredReminder(*r[:4], as_utc(r[4]), r[5], r[6])
        if reminder.status == "skipped":
            state.skipped.add((reminder.event_id, reminder.rule, reminder.for_start))
            continue
        # Ordered by id: the last one seen is the latest.
        state.current[(reminder.event_id, reminder.rule)] = reminder
        if reminder.status == "scheduled":
            state.scheduled.setdefault(reminder.event_id, []).append(reminder)
            if reminder.message_status not in (None, "queued"):
                state.went_out.append(reminder.id)
    return state


@dataclass(frozen=True)
class StoredMessage:
    status: str
    text: str
    recipient: str
    due_at: datetime  # aware UTC: when it goes out (a replan compares it)
    sender: str | None = None


_MESSAGES_BY_ID = select(
    MESSAGES.c.id,
    MESSAGES.c.status,
    MESSAGES.c.text,
    MESSAGES.c.recipient,
    MESSAGES.c.due_at,
    MESSAGES.c.sender,
).where(member(MESSAGES.c.id, "ids"))


def load_messages(conn: Connection, ids: Collection[str]) -> dict[str, StoredMessage]:
    """The outbox rows of IDS (those that exist)."""
    wanted = sorted(ids)
    found: dict[str, StoredMessage] = {}
    for start in range(0, len(wanted), _IDS_PER_QUERY):
        for row in conn.execute(_MESSAGES_BY_ID, {"ids": wanted[start : start + _IDS_PER_QUERY]}):
            found[row.id] = StoredMessage(
                row.status, row.text, row.recipient, as_utc(row.due_at), row.sender
            )
    return found
