"""OUI / NON answers to a reminder: the appointment is marked, the receptionist is told, and
the calendar is annotated at its next sync where the source allows writing."""

from __future__ import annotations

from sqlmodel import Session, select

from hub.config import Config
from hub.mailout import build_message, queue_mail
from hub.models import Calendar, CalendarEventRow, InboundMessage, Message, Reminder
from hub.optout import normalize_keyword
from hub.timeutil import as_utc


def answer_kind(text: str, config: Config) -> str | None:
    """'confirmed', 'cancelled' or None."""
    norm = normalize_keyword(text)
    if norm in {normalize_keyword(k) for k in config.inbound.confirm_keywords}:
        return "confirmed"
    if norm in {normalize_keyword(k) for k in config.inbound.cancel_keywords}:
        return "cancelled"
    return None


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
    event.answer_written = False
    session.add(event)
    if calendar is not None and calendar.notify_mailbox and config.mail_out.enabled:
        word = "confirmed" if kind == "confirmed" else "CANCELLED"
        when = as_utc(event.start).strftime("%Y-%m-%d %H:%M UTC")
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
