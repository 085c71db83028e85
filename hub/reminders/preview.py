"""The reminder preview: what rules would send for appointments, with nothing sent or
stored. One read service for the CLI's `smshub calendar preview` (every occurrence of an
ICS file) and the console's preview box (a calendar's next appointment): both read the
person, the text and each rule's send time here, as the reconciler would plan them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.core.timeutil import as_utc, utcnow
from hub.errors import InvalidInput
from hub.ports.calendar import (
    CalendarEvent,
    EventStatus,
    SourceContext,
    SyncResult,
    SyncWindow,
)
from hub.ports.registry import build_calendar_source
from hub.reminders import all_day
from hub.reminders.extract import find_recipient
from hub.reminders.naming import clean_title, naming
from hub.reminders.render import MOST_PARTS, render_reminder
from hub.reminders.rules import Offset, QuietHours, rule_zone
from hub.store.models import Calendar, CalendarEventRow


@dataclass(frozen=True)
class PreviewOptions:
    """What a preview applies, as a calendar would."""

    rules: list[Offset]
    now: datetime  # aware
    tz: str  # the calendar's zone: rules apply in it unless the event names its own
    locale: str
    template: str  # "" for the hub's default text
    region: str = "FR"  # country of national numbers in events
    quiet: QuietHours = QuietHours()
    # A reminder due sooner than this after ``now`` is "created too late".
    min_lead: timedelta = timedelta(0)
    max_parts: int = MOST_PARTS


@dataclass
class PreviewEvent:
    """One appointment as a preview shows it."""

    start: datetime  # aware
    zone: str  # where "09:00" is read: the event's own zone, else the calendar's
    person: str
    title: str
    location: str
    phone: str | None
    sample: bool
    person_source: str = ""  # where PERSON came from (hub.reminders.naming)
    all_day: bool = False
    uid: str = ""
    cancelled: bool = False
    # Why PHONE is None (no mobile number, only a landline...), when it is.
    phone_problem: str | None = None


def from_event(event: CalendarEvent, opts: PreviewOptions) -> PreviewEvent:
    """EVENT as a preview shows it: its recipient and the person greeted."""
    recipient = find_recipient(event, opts.region)
    named = naming(event, recipient.phone)
    return PreviewEvent(
        start=event.start,
        zone=rule_zone(event.timezone, opts.tz),
        person=named.name,
        title=named.title,
        location=event.location,
        phone=recipient.phone,
        sample=False,
        person_source=named.source,
        all_day=event.all_day,
        uid=event.uid,
        cancelled=event.status == EventStatus.CANCELLED,
        phone_problem=recipient.problem,
    )


def next_appointment(session: Session, calendar: Calendar, tz: str) -> PreviewEvent:
    """The next appointment of CALENDAR (one with a number first), else a sample one."""
    base = select(CalendarEventRow).where(
        CalendarEventRow.calendar_id == calendar.id,
        CalendarEventRow.deleted == False,  # noqa: E712
        CalendarEventRow.status != "cancelled",
        col(CalendarEventRow.start) >= utcnow(),
    )
    order = col(CalendarEventRow.start)
    row = (
        session.exec(
            base.where(col(CalendarEventRow.phone).is_not(None)).order_by(order).limit(1)
        ).first()
        or session.exec(base.order_by(order).limit(1)).first()
    )
    if row is not None:
        return PreviewEvent(
            as_utc(row.start),
            rule_zone(row.timezone, tz),
            row.person,
            clean_title(row.title),
            row.location,
            row.phone,
            False,
            row.person_source,
            row.all_day,
            uid=row.uid,
        )
    local = (utcnow() + timedelta(days=2)).astimezone(ZoneInfo(tz))
    start = local.replace(hour=10, minute=30, second=0, microsecond=0)
    return PreviewEvent(
        as_utc(start), tz, "Jeanne Durand", "Consultation", "Cabinet", None, sample=True
    )


def reminder_text(event: PreviewEvent, opts: PreviewOptions) -> str:
    """The SMS EVENT would get; InvalidInput / TemplateLimitExceeded as render_reminder."""
    return render_reminder(
        opts.template,
        locale=opts.locale,
        tz=event.zone,
        start=event.start,
        max_parts=opts.max_parts,
        name=event.person,
        title=event.title,
        location=event.location,
        all_day=event.all_day,
    )


def check_template(template: str, locale: str, tz: str) -> None:
    """Render TEMPLATE once on a made-up appointment: a broken one is reported before
    anything is read (InvalidInput / TemplateLimitExceeded)."""
    render_reminder(template, locale=locale, tz=tz, start=utcnow(), name="Test", title="")


def send_time(event: PreviewEvent, rule: Offset, opts: PreviewOptions) -> datetime | None:
    """When RULE sends EVENT's reminder (moved out of quiet hours); None for an hour rule
    on an all-day appointment."""
    return all_day.reminder_time(event.start, rule, event.zone, opts.quiet, event.all_day)


def problem(
    event: PreviewEvent, rule: Offset, when: datetime | None, opts: PreviewOptions
) -> str | None:
    """Why RULE would send EVENT no SMS at WHEN (None: it would)."""
    if event.cancelled:
        return "the appointment is cancelled"
    if event.phone is None:
        return event.phone_problem
    if when is None:
        return all_day.skip_note([rule.text])
    if event.start <= opts.now:
        return "the appointment has already begun"
    if when <= opts.now + opts.min_lead:
        return "created too late for this reminder"
    return None


def preview_entries(events: list[CalendarEvent], opts: PreviewOptions) -> list[dict[str, Any]]:
    """One entry per occurrence per rule, as the reconciler would plan it (nothing stored).

    ``problem`` says why no SMS would go out (an hour rule and an all-day appointment
    included: ``send_at`` is null then); a send time moved out of quiet hours is not a
    problem, it only shows in ``send_at``. ``name`` is the person greeted ("" when none is
    found) and ``name_source`` where it came from (description, attendee).
    """
    shown = ZoneInfo(opts.tz)
    entries = []
    for source_event in sorted(events, key=lambda e: (e.start, e.uid, e.occurrence)):
        event = from_event(source_event, opts)
        text = reminder_text(event, opts)
        for rule in opts.rules:
            when = send_time(event, rule, opts)
            entries.append(
                {
                    "event_uid": event.uid,
                    "start": event.start.astimezone(shown).isoformat(),
                    "all_day": event.all_day,
                    "send_at": when.astimezone(shown).isoformat() if when else None,
                    "to": event.phone,
                    "name": event.person,
                    "name_source": event.person_source,
                    "title": event.title,
                    "text": text,
                    "problem": problem(event, rule, when, opts),
                }
            )
    return entries


def entry_lines(entries: list[dict[str, Any]], rules: list[Offset]) -> list[str]:
    """ENTRIES as text, two lines each: when, rule, send time, number and person; then the
    SMS or why none goes out."""
    lines = []
    # Entries come rule after rule for each occurrence, in the order the rules were given.
    for index, entry in enumerate(entries):
        name = rules[index % len(rules)].text
        start = entry["start"][:10] + " all day" if entry["all_day"] else entry["start"][:16]
        send = entry["send_at"][:16] if entry["send_at"] else "-"
        greeted = (
            f"{entry['name']} (from {entry['name_source']})" if entry["name"] else "no name found"
        )
        lines.append(
            f"{start}  {name:<9} send {send:<16}  to {entry['to'] or '-'}  name: {greeted}"
        )
        said = f"NOT SENT: {entry['problem']}" if entry["problem"] else entry["text"]
        lines.append(f"    {said}")
    return lines


def parse_now(value: str | None, tz: str) -> datetime:
    """An ISO 8601 time as an aware datetime (without an offset, in TZ); now when None.
    InvalidInput naming VALUE when it is not one."""
    if value is None:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"--now {value!r} is not an ISO 8601 time such as 2025-03-20T12:00+01:00"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=ZoneInfo(tz))


async def read_ics(
    file_or_url: str, window: SyncWindow, tz: str, *, allow_private: bool = False
) -> SyncResult:
    """Every occurrence in WINDOW of an ICS file or URL (SourceError / HubError when it cannot
    be read). A throwaway data directory: the ICS source caches fetched files there, and a
    dry run leaves nothing behind."""
    with tempfile.TemporaryDirectory(prefix="smshub-preview-") as scratch:
        ctx = SourceContext(name="preview", data_dir=Path(scratch))
        settings: dict[str, Any] = {"url": file_or_url, "timezone": tz}
        if allow_private:
            settings["private_ok"] = True
        ics = build_calendar_source("ics", settings, ctx, "preview")
        try:
            return await ics.sync(window, None)
        finally:
            await ics.close()
