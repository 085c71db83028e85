"""OUI / NON answers to a reminder: the appointment is marked, the receptionist is told, and
the answer is queued for writing back to the calendar (hub.reminders.writeback).

A reminder is an open question from the moment it went out until its appointment starts:
whatever the number writes meanwhile answers it, even after an auto-reply or any other SMS
of ours to that number (hub.inbound asks ``open_question`` before anything else)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from hub.config import Config
from hub.mailout import build_message, queue_mail
from hub.models import (
    Calendar,
    CalendarEventRow,
    InboundMessage,
    Message,
    MessageStatus,
    Reminder,
)
from hub.optout import normalize_keyword
from hub.timeutil import local_text, utcnow

# A reminder in one of these states has reached (or may have reached) the phone.
_WENT_OUT = [
    MessageStatus.SUBMITTING,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.DR_UNAVAILABLE,
    MessageStatus.UNKNOWN,
]


def answer_kind(text: str, config: Config) -> str | None:
    """'confirmed', 'cancelled' or None."""
    norm = normalize_keyword(text)
    if norm in {normalize_keyword(k) for k in config.inbound.confirm_keywords}:
        return "confirmed"
    if norm in {normalize_keyword(k) for k in config.inbound.cancel_keywords}:
        return "cancelled"
    return None


def open_question(session: Session, number: str) -> Message | None:
    """The latest reminder that went out to NUMBER for an appointment that has not started
    (nor been cancelled or deleted): the question any SMS from NUMBER answers first."""
    return session.exec(
        select(Message)
        .join(Reminder, col(Reminder.message_id) == col(Message.id))
        .join(CalendarEventRow, col(CalendarEventRow.id) == col(Reminder.event_id))
        .where(
            Message.recipient == number,
            Message.source == "calendar",
            col(Message.status).in_(_WENT_OUT),
            col(CalendarEventRow.start) > utcnow(),
            CalendarEventRow.deleted == False,  # noqa: E712
            CalendarEventRow.status != "cancelled",
        )
        .order_by(col(Message.created_at).desc(), col(Message.id).desc())
        .limit(1)
    ).first()


def answer_note(kind: str) -> str:
    """The line written on the calendar's event."""
    return (
        "SMS: confirmed by the patient" if kind == "confirmed" else "SMS: CANCELLED by the patient"
    )


def handle_answer(
    session: Session, config: Config, inbound: InboundMessage, last: Message | None
) -> str | None:
    """Apply a reminder answer; returns the handling label or None if it is not one."""
    if last is None or last.source != "calendar":
        return None
    kind = answer_kind(inbound.text, config)
    if kind is None:
        return None
    reminder = session.exec(select(Reminder).where(Reminder.message_id == last.id)).first()
    if reminder is None:
        return None
    event = session.get(CalendarEventRow, reminder.event_id)
    if event is None:
        return None
    calendar = session.get(Calendar, event.calendar_id)
    event.answer = kind
    event.answer_at = inbound.received_at or utcnow()
    # Written back at once by the answer writer (and retried), not at the next sync.
    event.answer_written = False
    event.answer_due_at = utcnow()
    event.answer_attempts = 0
    event.answer_error = ""
    session.add(event)
    if calendar is not None and calendar.notify_mailbox and config.mail_out.enabled:
        word = "confirmed" if kind == "confirmed" else "CANCELLED"
        # The receptionist reads the calendar's own time, not UTC.
        when = local_text(event.start, calendar.timezone, event.all_day)
        body = (
            f"{event.person or inbound.sender} {word} the appointment "
            f'"{event.title}" on {when} by answering {inbound.text!r} from '
            f"{inbound.sender}.\n"
        )
        message = build_message(
            config.mail_out.from_address,
            calendar.notify_mailbox,
            f"Appointment {word}: {event.title} ({when})",
            body,
        )
        queue_mail(
            session,
            message,
            kind="answer",
            dedupe_key=f"answer:{inbound.id}",
            account_id=calendar.account_id,
        )
    return f"reminder-{kind}"
