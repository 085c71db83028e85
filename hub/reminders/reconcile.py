"""Keeping reminders in step with the calendar.

New occurrence → reminders planned (as scheduled outbox messages); moved → the old reminder
cancelled (and refunded) and a new one planned, never both; cancelled or deleted →
cancelled; moved after its reminder went out → optionally an "appointment changed" SMS. Each
reminder message has the idempotency key event + occurrence + rule + start, so a repeated
sync plans nothing twice.

Planning is set-based: the calendar's rows and reminders are read once and each synced
occurrence is compared with its row in memory. Only new or changed occurrences (or ones with
a rule still unplanned, or all of them once when the settings that shape a text changed:
``Calendar.planned_with``) get a recipient, send times and texts worked out; they are written
a chunk at a time (``hub.reminders.plan_write``), each chunk one transaction holding every
change of its occurrences: rows, cancellations and refunds, outbox rows, one charge. A sync
killed between chunks leaves each occurrence wholly planned or untouched; the next sync
finds the planned ones unchanged and finishes the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, bindparam
from sqlmodel import Session, col, select

from hub.core import phone
from hub.core.config import Config
from hub.core.timeutil import as_utc, utcnow
from hub.errors import HubError
from hub.ports.calendar import CalendarEvent, EventStatus, SyncResult, SyncWindow
from hub.reminders import all_day, naming, plan_write
from hub.reminders.extract import Recipient, find_recipient
from hub.reminders.plan_state import (
    RECIPIENT_FIELDS,
    CalendarState,
    StoredEvent,
    StoredMessage,
    StoredReminder,
    event_values,
    load_messages,
    load_state,
)
from hub.reminders.render import changed_template, default_template, render_reminder
from hub.reminders.rules import QuietHours, parse_hhmm, parse_offsets, rule_zone
from hub.sending import outbox
from hub.sending import submit as sending
from hub.store.db import read_scope, session_scope
from hub.store.models import Account, Calendar

log = logging.getLogger("smshub.reminders")

# Changed occurrences per transaction at first; then, on SQLite, sized so that a chunk's
# writes take about CHUNK_SECONDS (the write lock is held that long, and the dispatcher waits).
FIRST_CHUNK = 500
CHUNK_SECONDS = 0.15
MIN_CHUNK, MAX_CHUNK = 50, 5000


@dataclass
class ReconcileReport:
    """What one sync changed, for logs and `smshub calendars sync`."""

    seen: int = 0
    planned: int = 0
    rescheduled: int = 0
    cancelled: int = 0
    skipped: int = 0
    changed_notices: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _format_iso(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


# Each planned reminder's idempotency key names its start: a calendar's appointments share a
# few hundred starts (and calendars the same slots), and strftime is ~2 us. Only UTC ones
# (the planner's: as_utc) are cached: two of them are equal when they format alike (not so in
# a zone, where the two 01:30 of a DST change compare equal).
_utc_iso = lru_cache(maxsize=8192)(_format_iso)


def _iso(value: datetime) -> str:
    if value.tzinfo is not UTC:
        return _format_iso(value)
    return _utc_iso(value)


@dataclass
class _Rule:
    """One rule's plan for one occurrence."""

    rule: str
    start: datetime
    when: datetime
    text: str
    # The reminder this one replaces: cancelled first; if its message already left the
    # queue, nothing new is planned (it is going out).
    replace: StoredReminder | None = None
    submit: bool = False


@dataclass
class _Plan:
    """What a sync does to one occurrence."""

    key: tuple[str, str]
    row_id: int | None
    row: dict[str, Any]  # the row's columns as they are to be written
    write_row: bool
    country: str | None = None
    cancel_all: str | None = None  # cancel every scheduled reminder, with this note
    rules: list[_Rule] = field(default_factory=list)
    skips: list[tuple[str, datetime, datetime, str]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    notices: list[datetime] = field(default_factory=list)
    # The reminder text (or why there is none), rendered once for all the rules.
    text: str | HubError | None = None

    @property
    def label(self) -> str:
        return str(self.row["title"] or self.row["uid"])


def fingerprint(calendar: Calendar, region: str, max_parts: int) -> str:
    """The settings that decide an unchanged appointment's reminders: texts, recipient, send
    times (rules, quiet hours, lead). Any change replans every appointment once."""
    settings = [
        calendar.template or default_template(calendar.locale),
        calendar.locale,
        calendar.timezone,
        region,
        max_parts,
        calendar.offsets,
        calendar.quiet_start,
        calendar.quiet_end,
        calendar.min_lead_minutes,
        calendar.sender,
        # How names and all-day events are planned (issue 17): bumped, everything replans.
        "naming-1",
    ]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:32]


class Reconciler:
    """Plans one SyncResult for one calendar: ``load``, then ``changed`` and, chunk by chunk,
    ``decide`` and ``write``, then ``finish``."""

    def __init__(
        self, config: Config, calendar: Calendar, region: str, now: datetime | None = None
    ) -> None:
        self.config = config
        self.calendar = calendar
        self.calendar_id = calendar.id or 0
        # The calendar as its messages' idempotency keys name it: by id and creation time.
        # A calendar removed and connected again may get the same id (SQLite gives the
        # highest id again once its row is gone) while the old one's messages stay in the
        # history: by id alone, its reminders would be taken for those, cancelled, messages.
        # In UTC: PostgreSQL gives a time in the session's zone, which a server or client
        # setting may change between syncs.
        self._keyed = f"{self.calendar_id}.{as_utc(calendar.created_at):%Y%m%d%H%M%S%f}"
        self.now = now or utcnow()
        self.offsets = parse_offsets(calendar.offsets)
        self.quiet = QuietHours(
            parse_hhmm(calendar.quiet_start, "quiet_start"),
            parse_hhmm(calendar.quiet_end, "quiet_end"),
        )
        self.lead = timedelta(minutes=calendar.min_lead_minutes)
        # The calendar's settings each appointment's planning reads, as plain attributes (an
        # ORM attribute costs ~10x, read several times per appointment).
        self._zone: str = calendar.timezone
        self._locale: str = calendar.locale
        self._template: str = calendar.template
        self._max_parts = config.sending.max_parts
        # The rules that do not apply to an appointment, and the note saying so, by whether
        # it is all-day (the same for all of the calendar's appointments).
        self._inapplicable = {
            flag: all_day.not_applying(self.offsets, flag) for flag in (False, True)
        }
        self._skip_notes = {
            flag: all_day.skip_note(rules) for flag, rules in self._inapplicable.items()
        }
        self.region = region
        self.planned_with = fingerprint(calendar, region, config.sending.max_parts)
        self.same_settings = calendar.planned_with == self.planned_with
        # The sender new reminders get (``load`` reads the account's default): a queued one
        # from another sender is planned again; not compared when it cannot be used.
        self.sender: str | None = None
        self.sender_usable = False
        self.report = ReconcileReport()
        self.state = CalendarState()
        self.seen: set[tuple[str, str]] = set()
        self._countries: dict[str, str | None] = {}
        # Recipients worked out by ``prepare`` for the chunk being decided, and the names
        # of the account's contacts with their numbers.
        self._recipients: dict[tuple[str, str], Recipient] = {}
        self._contacts: dict[str, str] = {}
        # The names ``prepare`` found in the chunk's events (``decide`` greets with them).
        self._in_event: dict[tuple[str, str], tuple[str, str]] = {}

    # -- reading -------------------------------------------------------------------------
    def load(self, session: Session, account: Account | None) -> None:
        """Read the calendar's rows and reminders; ACCOUNT: the calendar's (None: gone)."""
        self.state = load_state(session.connection(), self.calendar_id)
        self.sender_usable, self.sender = _sender(self.calendar, account)

    def changed(self, result: SyncResult) -> list[tuple[CalendarEvent, dict[str, Any]]]:
        """The synced occurrences that need planning, with their compared values; the
        others are unchanged (their rows and reminders stay as they are)."""
        self.report.warnings.extend(result.warnings)
        latest: dict[tuple[str, str], CalendarEvent] = {}
        for event in result.events:
            self.report.seen += 1
            latest[event.key] = event  # listed twice: the last one counts
        self.seen = set(latest)
        out = []
        for key, event in latest.items():
            values = event_values(event)
            stored = self.state.rows.get(key)
            if (
                stored is None
                or stored.deleted
                or stored.values != values
                or not self.same_settings
                or self._unplanned(stored)
            ):
                out.append((event, values))
        return out

    def _unplanned(self, stored: StoredEvent) -> bool:
        """Whether an unchanged occurrence still has something to plan (a rule refused or
        skipped earlier whose time is still ahead, a move whose old reminder went out)."""
        start = stored.values["start"]
        if stored.values["status"] == EventStatus.CANCELLED.value:
            return False
        if stored.phone is None:
            if start > self.now:
                self.report.problems.append(
                    f"{stored.values['title'] or stored.uid}: {stored.problem}"
                )
            return False
        for offset in self.offsets:
            current = self.state.current.get((stored.id, offset.text))
            if current is not None:
                if current.for_start != start:
                    return True
                continue
            when = all_day.reminder_time(
                start,
                offset,
                self._tz(stored.values["timezone"]),
                self.quiet,
                stored.values["all_day"],
            )
            if when is not None and when > self.now + self.lead:
                return True
        return False

    def messages(self, session: Session, events: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """The outbox rows of the current reminders of EVENTS (what ``decide`` compares)."""
        ids = set()
        for key in events:
            stored = self.state.rows.get(key)
            if stored is None:
                continue
            for offset in self.offsets:
                current = self.state.current.get((stored.id, offset.text))
                if current is not None and current.message_id is not None:
                    ids.add(current.message_id)
        return dict(load_messages(session.connection(), ids)) if ids else {}

    def _keeps_recipient(self, stored: StoredEvent | None, values: dict[str, Any]) -> bool:
        """Whether an occurrence keeps its stored recipient and name (nothing they are
        found in changed, nor the settings)."""
        return (
            stored is not None
            and self.same_settings
            and all(stored.values[f] == values[f] for f in RECIPIENT_FIELDS)
        )

    def prepare(
        self, session: Session, changed: list[tuple[CalendarEvent, dict[str, Any]]]
    ) -> None:
        """Work out the recipients of CHANGED and read the names of the account's contacts
        with those numbers: one statement for the chunk, not one per appointment."""
        self._recipients = {}
        self._in_event = {}
        wanted = set()
        for event, values in changed:
            key = event.key
            if self._keeps_recipient(self.state.rows.get(key), values):
                continue
            recipient = find_recipient(event, self.region)
            self._recipients[key] = recipient
            if not recipient.phone or recipient.phone in self._contacts:
                continue
            in_event = self._in_event[key] = naming.name_in_event(event)
            # Contacts are asked only for numbers whose event names nobody.
            if not in_event[0]:
                wanted.add(recipient.phone)
        if wanted:
            found = naming.contact_names(session.connection(), self.calendar.account_id, wanted)
            self._contacts.update({number: found.get(number, "") for number in wanted})

    # -- deciding (no database) ----------------------------------------------------------
    def decide(
        self,
        changed: list[tuple[CalendarEvent, dict[str, Any]]],
        messages: dict[str, StoredMessage],
    ) -> list[_Plan]:
        return [self._decide(event, values, messages) for event, values in changed]

    def _tz(self, zone: str) -> str:
        return rule_zone(zone, self._zone)

    def _text(self, row: dict[str, Any], template: str) -> str:
        return render_reminder(
            template,
            locale=self._locale,
            tz=self._tz(row["timezone"]),
            start=row["start"],
            max_parts=self._max_parts,
            name=row["person"],
            title=naming.clean_title(row["title"]),
            location=row["location"],
            all_day=row["all_day"],
        )

    def _decide(
        self, event: CalendarEvent, values: dict[str, Any], messages: dict[str, StoredMessage]
    ) -> _Plan:
        key = event.key
        stored = self.state.rows.get(key)
        row = {
            "calendar_id": self.calendar_id,
            "uid": event.uid,
            "occurrence": event.occurrence,
            **values,
            "deleted": False,
            "updated_at": self.now,
        }
        plan = _Plan(
            key,
            stored.id if stored else None,
            row,
            write_row=stored is None or stored.deleted or stored.values != values,
        )
        if stored is None:
            row.update(answer="", answer_written=False)
        if stored is not None and self._keeps_recipient(stored, values):
            row["phone"], row["person"], row["person_source"], row["problem"] = (
                stored.phone,
                stored.person,
                stored.person_source,
                stored.problem,
            )
        else:
            recipient = self._recipients.pop(key, None) or find_recipient(event, self.region)
            name, source = naming.greeting(
                event, recipient.phone, self._contacts, self._in_event.pop(key, None)
            )
            problem = recipient.problem
            if recipient.phone is not None and self._inapplicable[bool(event.all_day)]:
                problem = self._skip_notes[bool(event.all_day)]
            row["phone"], row["person"], row["person_source"], row["problem"] = (
                recipient.phone,
                name,
                source,
                problem[:255],
            )
            plan.country = recipient.country
            if stored is not None and (
                (stored.phone, stored.person, stored.person_source, stored.problem)
                != (row["phone"], row["person"], row["person_source"], row["problem"])
            ):
                plan.write_row = True
        if event.status == EventStatus.CANCELLED:
            plan.cancel_all = "the appointment was cancelled"
            return plan
        start = values["start"]
        if row["phone"] is None:
            plan.cancel_all = f"no number: {row['problem']}"
            if start > self.now:
                self.report.problems.append(f"{event.title or event.uid}: {row['problem']}")
            return plan
        zone = self._tz(row["timezone"])
        for offset in self.offsets:
            when = all_day.reminder_time(start, offset, zone, self.quiet, row["all_day"])
            self._decide_rule(plan, stored, offset.text, start, when, messages)
        return plan

    def _decide_rule(
        self,
        plan: _Plan,
        stored: StoredEvent | None,
        rule: str,
        start: datetime,
        when: datetime | None,
        messages: dict[str, StoredMessage],
    ) -> None:
        current = self.state.current.get((stored.id, rule)) if stored else None
        if when is None:
            self._not_applying(plan, current, rule, start, messages)
            return
        text = self._plan_text(plan, rule, start, when)
        if text is None:
            return
        replace = None
        if current is not None:
            message = messages.get(current.message_id) if current.message_id else None
            if message is not None and message.status != "queued":
                if self._went_out(plan, current, start):
                    return
                # The new time's reminder, if still ahead, is planned below.
            elif self._unchanged(plan, current, message, start, when, text):
                return
            else:
                replace = current
        item = _Rule(rule, start, when, text, replace)
        if when <= self.now + self.lead:
            if start > self.now and current is None:
                plan.skips.append((rule, start, when, "created too late for this reminder"))
            elif replace is not None:
                plan.rules.append(item)  # the old one is cancelled, nothing new planned
            return
        item.submit = True
        plan.rules.append(item)

    def _not_applying(
        self,
        plan: _Plan,
        current: StoredReminder | None,
        rule: str,
        start: datetime,
        messages: dict[str, StoredMessage],
    ) -> None:
        """The rule does not apply (an hour rule, an all-day appointment): a reminder it
        planned before (the event had a time then) is cancelled, and the skip recorded."""
        message = messages.get(current.message_id) if current and current.message_id else None
        if current is not None and message is not None and message.status == "queued":
            plan.rules.append(_Rule(rule, start, start, "", current))
        plan.skips.append((rule, start, start, str(plan.row["problem"])))

    def _plan_text(self, plan: _Plan, rule: str, start: datetime, when: datetime) -> str | None:
        """The plan's reminder text, rendered once for all its rules; None (the reminder
        skipped and reported) when it cannot be sent."""
        if plan.text is None:
            try:
                plan.text = self._text(plan.row, self._template)
            except HubError as exc:
                plan.text = exc
        text = plan.text
        if isinstance(text, str):
            return text
        # This event's text cannot be sent (too long for sending.max_parts, say): the
        # reminder is skipped and reported; the other events go on.
        plan.skips.append((rule, start, when, str(text)))
        self.report.problems.append(f"{plan.label}: {text}")
        return None

    def _went_out(self, plan: _Plan, current: StoredReminder, start: datetime) -> bool:
        """CURRENT's message left the queue: it counts as sent. True when it was for START
        (nothing more to plan)."""
        plan.sent.append(current.id)
        if current.for_start == start:
            return True
        if self.calendar.notify_changes and start > self.now:
            plan.notices.append(start)
        return False

    def _unchanged(
        self,
        plan: _Plan,
        current: StoredReminder,
        message: StoredMessage | None,
        start: datetime,
        when: datetime,
        text: str,
    ) -> bool:
        """True when CURRENT's queued message is already what the rule would plan."""
        return (
            current.for_start == start
            and message is not None
            and message.text == text
            and message.recipient == plan.row["phone"]
            and abs(message.due_at - when) <= timedelta(seconds=1)
            and (not self.sender_usable or message.sender == self.sender)
        )

    # -- writing -------------------------------------------------------------------------
    def write(self, session: Session, plans: list[_Plan]) -> None:
        """Write PLANS in SESSION's transaction (a few statements for all of them)."""
        self._write_rows(session, plans)
        statuses: list[tuple[int, str, str]] = []
        sent: list[int] = [i for p in plans for i in p.sent]
        self._cancel(session, plans, statuses, sent)
        plan_write.set_sent(session, sent)
        plan_write.set_statuses(session, statuses)
        for p in plans:
            for start in p.notices:
                self._changed_notice(session, p, start)
        self._submit(session, plans)
        skips = []
        for p in plans:
            assert p.row_id is not None
            for rule, start, when, why in p.skips:
                skips += self._skip(p.row_id, rule, start, when, why)
        plan_write.insert_reminders(session, skips)

    def _write_rows(self, session: Session, plans: list[_Plan]) -> None:
        """Insert the new occurrences (giving their plans a row id), update the changed."""
        changed = [(p.row_id, p.row) for p in plans if p.write_row and p.row_id is not None]
        new = [p for p in plans if p.row_id is None]
        ids = plan_write.insert_rows(session, [p.row for p in new])
        for plan, row_id in zip(new, ids, strict=True):
            plan.row_id = row_id
        plan_write.update_rows(session, changed)

    def _cancel(
        self,
        session: Session,
        plans: list[_Plan],
        statuses: list[tuple[int, str, str]],
        sent: list[int],
    ) -> None:
        """Cancel what PLANS cancel or replace, in one statement; a reminder whose message
        could not be cancelled any more counts as sent (STATUSES and SENT get the outcome)."""
        # Cancellations first: a replaced reminder's successor is planned only if its
        # message could still be cancelled.
        doomed: list[str] = []
        for p in plans:
            if p.cancel_all is not None and p.row_id is not None:
                doomed += [r.message_id for r in self._scheduled(p.row_id) if r.message_id]
            doomed += [r.replace.message_id for r in p.rules if r.replace and r.replace.message_id]
        cancelled = outbox.cancel_queued_many(session, doomed) if doomed else set()
        for p in plans:
            if p.cancel_all is not None and p.row_id is not None:
                self._cancel_all(p.row_id, p.cancel_all, cancelled, statuses, sent)
            for r in p.rules:
                if r.replace is not None:
                    self._replaced(r, cancelled, statuses)

    def _replaced(
        self, rule: _Rule, cancelled: set[str], statuses: list[tuple[int, str, str]]
    ) -> None:
        assert rule.replace is not None
        if rule.replace.message_id is None or rule.replace.message_id in cancelled:
            statuses.append(
                (rule.replace.id, "cancelled", "replaced: the appointment or its text changed")
            )
            self.report.rescheduled += 1
        else:
            rule.submit = False  # the dispatcher took it a moment ago: it is going out

    def _scheduled(self, event_id: int) -> list[StoredReminder]:
        return self.state.scheduled.get(event_id, [])

    def _cancel_all(
        self,
        event_id: int,
        why: str,
        cancelled: set[str],
        statuses: list[tuple[int, str, str]],
        sent: list[int],
    ) -> None:
        for reminder in self.state.scheduled.pop(event_id, []):
            if reminder.message_id is not None and reminder.message_id not in cancelled:
                sent.append(reminder.id)
            else:
                statuses.append((reminder.id, "cancelled", why))
                self.report.cancelled += 1

    def _skip(
        self, event_id: int, rule: str, start: datetime, when: datetime, why: str
    ) -> list[dict[str, Any]]:
        if (event_id, rule, start) in self.state.skipped:
            return []
        self.state.skipped.add((event_id, rule, start))
        self.report.skipped += 1
        return [plan_write.reminder_row(event_id, rule, start, when, status="skipped", note=why)]

    def _country(self, e164: str) -> str | None:
        if e164 not in self._countries:
            self._countries[e164] = phone.parse_number(e164, self.region).country
        return self._countries[e164]

    def _submit(self, session: Session, plans: list[_Plan]) -> None:
        subs: list[plan_write.Submission] = []
        for p in plans:
            assert p.row_id is not None
            for r in p.rules:
                if not r.submit:
                    continue
                key = (
                    f"reminder:{self._keyed}:{p.row['uid']}:{p.row['occurrence']}:"
                    f"{r.rule}:{_iso(r.start)}"
                )
                if r.replace is not None:
                    # A replacement for the same start (new text, time or number) needs a
                    # key of its own: the replaced message keeps the first one.
                    key += f":r{r.replace.id}"
                subs.append(
                    plan_write.Submission(
                        p.row_id,
                        r.rule,
                        r.start,
                        r.when,
                        p.row["phone"],
                        p.country,
                        r.text,
                        key,
                        p.label,
                    )
                )
        outcomes = plan_write.submit_reminders(
            session,
            self.config,
            self.calendar.account_id,
            self.calendar.sender,
            subs,
            f"calendar {self.calendar.name}",
            self._country,
        )
        rows = []
        for o in outcomes:
            s = o.submission
            if o.message_id is None:
                rows += self._skip(s.event_id, s.rule, s.start, s.when, o.reason or "refused")
                if o.problem:
                    self.report.problems.append(f"{s.label}: {o.reason}")
                continue
            rows.append(
                plan_write.reminder_row(
                    s.event_id, s.rule, s.start, s.when, message_id=o.message_id
                )
            )
            self.report.planned += 1
        plan_write.insert_reminders(session, rows)

    def _changed_notice(self, session: Session, plan: _Plan, start: datetime) -> None:
        key = f"changed:{self._keyed}:{plan.row['uid']}:{plan.row['occurrence']}:{_iso(start)}"
        try:
            with session.begin_nested():
                sending.submit_in(
                    session,
                    self.config,
                    sending.SubmitRequest(
                        account=self.calendar.account_id,
                        recipients=[plan.row["phone"]],
                        text=self._text(plan.row, changed_template(self.calendar.locale)),
                        sender=self.calendar.sender,
                        source="calendar",
                        idempotency_key=key,
                    ),
                )
            self.report.changed_notices += 1
        except HubError as exc:
            self.report.problems.append(f"{plan.label}: change notice not sent: {exc}")

    # -- the end -------------------------------------------------------------------------
    def gone(self, result: SyncResult, window: SyncWindow) -> list[StoredEvent]:
        """Stored occurrences the sync says are deleted."""
        rows = self.state.rows
        gone: dict[int, StoredEvent] = {}
        if result.full:
            for key, r in rows.items():
                if (
                    key not in self.seen
                    and not r.deleted
                    and window.start <= r.values["start"] <= window.end
                ):
                    gone[r.id] = r
        for removed in result.removed:
            for (uid, occ), r in rows.items():
                if (
                    uid == removed.uid
                    and (removed.occurrence is None or occ == removed.occurrence)
                    and not r.deleted
                ):
                    gone[r.id] = r
        return list(gone.values())

    def delete(self, session: Session, rows: list[StoredEvent]) -> None:
        """Mark ROWS deleted and cancel their reminders."""
        plan_write.mark_deleted(session, [r.id for r in rows])
        doomed = [m.message_id for r in rows for m in self._scheduled(r.id) if m.message_id]
        cancelled = outbox.cancel_queued_many(session, doomed) if doomed else set()
        statuses: list[tuple[int, str, str]] = []
        sent: list[int] = []
        for r in rows:
            self._cancel_all(r.id, "the appointment was deleted", cancelled, statuses, sent)
        plan_write.set_sent(session, sent)
        plan_write.set_statuses(session, statuses)

    def finish(self, session: Session) -> None:
        """Record what went out since the last sync, and the settings planned with."""
        plan_write.set_sent(session, self.state.went_out)
        self.state.went_out = []


def _sender(calendar: Calendar, account: Account | None) -> tuple[bool, str | None]:
    """(usable, sender): the sender CALENDAR's new reminders go out from (its own, else its
    ACCOUNT's; None: the provider's); not usable, submitting them says why."""
    chosen = calendar.sender if calendar.sender is not None else account and account.default_sender
    try:
        return True, sending.validate_sender(chosen or None)
    except HubError:
        return False, None


def _account(session: Session, calendar: Calendar) -> Account | None:
    """CALENDAR's account, read once per sync (its region and sender shape the plans)."""
    return session.get(Account, calendar.account_id)


def _region(config: Config, account: Account | None) -> str:
    return (account.default_region if account else None) or config.hub.default_region


def reconcile(
    session: Session,
    config: Config,
    calendar: Calendar,
    result: SyncResult,
    window: SyncWindow,
    now: datetime | None = None,
) -> ReconcileReport:
    """Apply RESULT to CALENDAR's stored events and reminders (in SESSION's transaction)."""
    account = _account(session, calendar)
    rec = Reconciler(config, calendar, _region(config, account), now)
    session.flush()
    rec.load(session, account)
    changed = rec.changed(result)
    rec.prepare(session, changed)
    plans = rec.decide(changed, rec.messages(session, [e.key for e, _ in changed]))
    rec.write(session, plans)
    rec.delete(session, rec.gone(result, window))
    rec.finish(session)
    calendar.planned_with = rec.planned_with
    session.add(calendar)
    return rec.report


# Read twice per sync: built once.
_CALENDAR_AND_ACCOUNT = (
    select(Calendar, Account)
    .outerjoin(Account, col(Account.id) == Calendar.account_id)
    .where(col(Calendar.id) == bindparam("calendar_id"))
)


def _calendar_and_account(
    session: Session, calendar_id: int
) -> tuple[Calendar, Account | None] | None:
    """The calendar and its account, in one statement (None: no such calendar)."""
    found = session.execute(_CALENDAR_AND_ACCOUNT, {"calendar_id": calendar_id}).first()
    return None if found is None else (found[0], found[1])


def _finish(
    session: Session,
    rec: Reconciler,
    stored: Calendar | None,
    finish: Callable[[Session, Calendar], None] | None,
) -> None:
    """The end of a chunked sync (STORED: the calendar, read in SESSION): what went out,
    the settings planned with, FINISH."""
    rec.finish(session)
    assert stored is not None
    stored.planned_with = rec.planned_with
    if finish is not None:
        finish(session, stored)
    session.add(stored)


def _read_chunk(
    session: Session, rec: Reconciler, chunk: list[tuple[CalendarEvent, dict[str, Any]]]
) -> dict[str, StoredMessage]:
    """What deciding CHUNK reads: its reminders' outbox rows (returned), its contacts."""
    messages = rec.messages(session, [e.key for e, _ in chunk])
    rec.prepare(session, chunk)
    return messages


def reconcile_chunked(
    engine: Engine,
    config: Config,
    calendar_id: int,
    result: SyncResult,
    window: SyncWindow,
    *,
    now: datetime | None = None,
    finish: Callable[[Session, Calendar], None] | None = None,
    after_write: Callable[[Session, int], None] | None = None,
) -> ReconcileReport:
    """Apply RESULT to the calendar in transactions of a chunk of occurrences each, sized so
    none holds SQLite's write lock much longer than CHUNK_SECONDS; the work between them
    (recipients, texts) runs outside any transaction. FINISH runs in the last transaction
    (the caller records the sync's cursor there: a sync killed before it is done again).
    AFTER_WRITE(session, chunk number) runs before each chunk's commit (for tests)."""
    run = _ChunkedSync(engine, calendar_id, finish, after_write)
    run.open(config, result, window, now)
    while run.done < len(run.changed):
        run.write_next()
    run.end()
    return run.rec.report


class _ChunkedSync:
    """One ``reconcile_chunked``: the calendar and the first chunk's reads (``open``), a
    transaction per chunk (``write_next``), then the deletions and the sync's end (``end``).

    PostgreSQL locks rows, not the database: a chunk there is as large as allowed, each
    chunk's fixed cost (lookups, charge, commit) paid as few times as possible, and the first
    chunk is decided and written in the transaction that read the calendar (a session, and a
    read of the calendar and its account, less per sync). Deciding takes no lock: the rows a
    chunk charges and writes are locked after it, as in any chunk. On SQLite every chunk is
    decided outside a transaction (the write lock is the dispatcher's too) and sized from the
    previous one's pace."""

    def __init__(
        self,
        engine: Engine,
        calendar_id: int,
        finish: Callable[[Session, Calendar], None] | None,
        after_write: Callable[[Session, int], None] | None,
    ) -> None:
        self.engine = engine
        self.calendar_id = calendar_id
        self.finish = finish
        self.after_write = after_write
        self.adaptive = engine.dialect.name == "sqlite"
        self.size = FIRST_CHUNK if self.adaptive else MAX_CHUNK
        self.done = self.chunk_no = 0
        self.ended = False

    def open(
        self, config: Config, result: SyncResult, window: SyncWindow, now: datetime | None
    ) -> None:
        """Read the calendar, its state and the first chunk's lookups (PostgreSQL: and write
        that chunk in the same transaction)."""
        with (read_scope if self.adaptive else session_scope)(self.engine) as session:
            found = _calendar_and_account(session, self.calendar_id)
            if found is None:
                raise HubError(f"no calendar {self.calendar_id}")
            calendar, account = found
            self.rec = Reconciler(config, calendar, _region(config, account), now)
            self.rec.load(session, account)
            self.changed = self.rec.changed(result)
            self.messages = _read_chunk(session, self.rec, self.changed[: self.size])
            self.gone = self.rec.gone(result, window)
            if not self.adaptive:
                self._write_first(session, calendar)

    def _write_first(self, session: Session, calendar: Calendar) -> None:
        chunk = self.changed[: self.size]
        if chunk:
            self.rec.write(session, self.rec.decide(chunk, self.messages))
            self.done, self.chunk_no = len(chunk), 1
        if self.done == len(self.changed) and not self.gone:
            # Nothing left: the sync ends here, with the calendar read above.
            _finish(session, self.rec, calendar, self.finish)
            self.ended = True
        if chunk and self.after_write is not None:
            self.after_write(session, 0)

    def write_next(self) -> None:
        """Decide and write the next chunk, in a transaction of its own."""
        chunk = self.changed[self.done : self.done + self.size]
        if self.done:
            with read_scope(self.engine) as session:
                self.messages = _read_chunk(session, self.rec, chunk)
        plans = self.rec.decide(chunk, self.messages)
        ends = self.done + len(chunk) >= len(self.changed) and not self.gone
        with session_scope(self.engine) as session:
            started = time.perf_counter()
            ending = None
            if ends:
                # Nothing to delete: the sync ends in this transaction (one commit less
                # per sync; a sync killed before it is done again either way). Its calendar
                # is read first, with the account: held here, the account is in the
                # session when the submissions ask for it (one statement for both).
                found = _calendar_and_account(session, self.calendar_id)
                ending = found[0] if found else None
            self.rec.write(session, plans)
            if ends:
                _finish(session, self.rec, ending, self.finish)
                self.ended = True
            if self.after_write is not None:
                self.after_write(session, self.chunk_no)
            took = time.perf_counter() - started
        self.done += len(chunk)
        self.chunk_no += 1
        if self.adaptive:
            # The next chunk's size from this one's pace (statements cost per row).
            pace = len(chunk) * CHUNK_SECONDS / max(took, 1e-3)
            self.size = int(min(MAX_CHUNK, max(MIN_CHUNK, pace)))

    def end(self) -> None:
        """Delete what the sync says is gone, and record its end (unless a chunk did)."""
        if self.ended:
            return
        for start in range(0, len(self.gone), MAX_CHUNK):
            with session_scope(self.engine) as session:
                self.rec.delete(session, self.gone[start : start + MAX_CHUNK])
        with session_scope(self.engine) as session:
            _finish(session, self.rec, session.get(Calendar, self.calendar_id), self.finish)
