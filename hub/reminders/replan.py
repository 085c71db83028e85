"""Replanning a calendar's reminders after its settings changed, from what the hub stored.

New rules, quiet hours, template, language or time zone change the reminders already
planned: each upcoming appointment, as last synced, goes through the planner again (the
calendar's ``planned_with`` no longer matches), so a reminder whose send time or text
changes is cancelled, refunded and planned anew exactly as when the appointment moves.
Nothing is read from the calendar's server: it may be slow or down, and the appointments
have not changed.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from hub.core.config import Config
from hub.core.i18n import gettext, ngettext
from hub.core.timeutil import as_utc, utcnow
from hub.ports.calendar import Attendee, CalendarEvent, EventStatus, SyncResult, SyncWindow
from hub.reminders.plan_state import EVENTS
from hub.reminders.reconcile import ReconcileReport, reconcile_chunked
from hub.store.db import read_scope


def _attendees(text: str) -> tuple[Attendee, ...]:
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return ()
    return tuple(
        Attendee(email=a.get("email"), name=a.get("name")) for a in found if isinstance(a, dict)
    )


def upcoming_events(conn: Connection, calendar_id: int, now: datetime) -> list[CalendarEvent]:
    """CALENDAR_ID's stored appointments that have not begun, as the planner's events (their
    compared values equal to the stored ones: nothing looks edited)."""
    query = select(
        EVENTS.c.uid,
        EVENTS.c.occurrence,
        EVENTS.c.start,
        EVENTS.c.end,
        EVENTS.c.timezone,
        EVENTS.c.all_day,
        EVENTS.c.title,
        EVENTS.c.location,
        EVENTS.c.description,
        EVENTS.c.attendees,
        EVENTS.c.status,
        EVENTS.c.etag,
    ).where(
        EVENTS.c.calendar_id == calendar_id,
        EVENTS.c.deleted == False,  # noqa: E712
        EVENTS.c.start > now,
    )
    return [
        CalendarEvent(
            uid=r.uid,
            occurrence=r.occurrence,
            start=as_utc(r.start),
            end=as_utc(r.end) if r.end is not None else None,
            timezone=r.timezone,
            all_day=r.all_day,
            title=r.title,
            location=r.location,
            description=r.description,
            attendees=_attendees(r.attendees),
            status=EventStatus(r.status),
            etag=r.etag,
        )
        for r in conn.execute(query)
    ]


def replan(
    engine: Engine, config: Config, calendar_id: int, now: datetime | None = None
) -> ReconcileReport:
    """Plan CALENDAR_ID's upcoming reminders by its current settings; the report's
    ``rescheduled`` counts the reminders moved (or rewritten), ``cancelled`` those a rule no
    longer plans, ``planned`` the new ones. The sync cursor is left as it is."""
    moment = now or utcnow()
    with read_scope(engine) as session:
        events = upcoming_events(session.connection(), calendar_id, moment)
    # A delta of every upcoming appointment (not ``full``): nothing stored is taken as gone.
    result = SyncResult(events, [], full=False)
    return reconcile_chunked(
        engine, config, calendar_id, result, SyncWindow(moment, moment), now=moment
    )


def replanned_message(report: ReconcileReport) -> str:
    """What a settings change did to the planned reminders, as the console and CLI say it
    (in the language in effect: the console user's; English on the command line)."""
    parts = [
        ngettext("%(num)s reminder replanned", "%(num)s reminders replanned", report.rescheduled)
    ]
    if report.planned > report.rescheduled:
        parts.append(gettext("%(num)s newly planned", num=report.planned - report.rescheduled))
    if report.cancelled:
        parts.append(gettext("%(num)s cancelled and refunded", num=report.cancelled))
    if report.problems:
        parts.append(
            gettext("%(num)s appointment(s) cannot get a reminder", num=len(report.problems))
        )
    return ", ".join(parts)
