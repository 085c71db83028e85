"""OUI / NON answers to a reminder: the appointment is marked, the receptionist is told, and
the answer is queued for writing back to the calendar (hub.reminders.writeback).

A reminder is an open question from the moment it went out until its appointment starts:
whatever the number writes meanwhile answers it, even after an auto-reply or any other SMS
of ours to that number (hub.inbound.answers asks ``open_question`` before anything else)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from hub.core import i18n
from hub.core.config import Config
from hub.core.i18n import gettext as _
from hub.core.timeutil import local_text, utcnow
from hub.errors import InvalidInput
from hub.mail.outbox import build_message, queue_mail
from hub.sending.optout import normalize_keyword
from hub.store.models import (
    Account,
    Calendar,
    CalendarEventRow,
    InboundMessage,
    Message,
    MessageStatus,
    Reminder,
)

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
        # The receptionist reads the calendar's own time, not UTC, in the account's language.
        when = local_text(event.start, calendar.timezone, event.all_day)
        facts = {
            "person": event.person or inbound.sender,
            "title": event.title,
            "when": when,
            "answer": repr(inbound.text),
            "number": inbound.sender,
        }
        account = session.get(Account, calendar.account_id)
        with i18n.use(i18n.account_language(account, config)):
            if kind == "confirmed":
                body = _(
                    '%(person)s confirmed the appointment "%(title)s" on %(when)s by '
                    "answering %(answer)s from %(number)s.",
                    **facts,
                )
                subject = _("Appointment confirmed: %(title)s (%(when)s)", **facts)
            else:
                body = _(
                    '%(person)s CANCELLED the appointment "%(title)s" on %(when)s by '
                    "answering %(answer)s from %(number)s.",
                    **facts,
                )
                subject = _("Appointment CANCELLED: %(title)s (%(when)s)", **facts)
        message = build_message(
            config.mail_out.from_address, calendar.notify_mailbox, subject, body + "\n"
        )
        queue_mail(
            session,
            message,
            kind="answer",
            dedupe_key=f"answer:{inbound.id}",
            account_id=calendar.account_id,
        )
    return f"reminder-{kind}"


# What the console and the CLI filter upcoming appointments by.
ANSWER_FILTERS = ("all", "confirmed", "cancelled", "unanswered")


def upcoming_appointments(
    session: Session,
    *,
    calendar_id: int | None = None,
    account_id: int | None = None,
    answer: str = "all",
    limit: int = 100,
) -> list[tuple[CalendarEventRow, Calendar]]:
    """Appointments not started yet that get reminders (they have a mobile number), with
    their calendar, soonest first; ANSWER (one of ANSWER_FILTERS) keeps those the patient
    confirmed, cancelled, or has not answered."""
    if answer not in ANSWER_FILTERS:
        raise InvalidInput(f"answer must be one of {', '.join(ANSWER_FILTERS)}, not {answer!r}")
    query = (
        select(CalendarEventRow, Calendar)
        .join(Calendar, col(Calendar.id) == col(CalendarEventRow.calendar_id))
        .where(
            col(CalendarEventRow.start) > utcnow(),
            CalendarEventRow.deleted == False,  # noqa: E712
            CalendarEventRow.status != "cancelled",
            col(CalendarEventRow.phone).is_not(None),
        )
    )
    if calendar_id is not None:
        query = query.where(CalendarEventRow.calendar_id == calendar_id)
    if account_id is not None:
        query = query.where(Calendar.account_id == account_id)
    if answer != "all":
        query = query.where(CalendarEventRow.answer == ("" if answer == "unanswered" else answer))
    query = query.order_by(col(CalendarEventRow.start), col(CalendarEventRow.id)).limit(limit)
    return [(e, c) for e, c in session.exec(query).all()]


def answer_text(event: CalendarEventRow) -> str:
    """The answer as the console and the CLI show it."""
    if event.answer == "confirmed":
        return "confirmed by the patient"
    if event.answer == "cancelled":
        return "cancelled by the patient"
    return "unanswered"


def written_text(event: CalendarEventRow) -> str:
    """Where writing the answer to the calendar stands."""
    if not event.answer:
        return ""
    if event.answer_written:
        return event.answer_error or "written to the calendar"
    if event.answer_due_at is None:
        return f"not written: {event.answer_error}" if event.answer_error else "not written"
    if event.answer_error:
        return f"retrying ({event.answer_attempts} failed: {event.answer_error})"
    return "being written"
