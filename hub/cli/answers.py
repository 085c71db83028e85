"""`smshub reminders answers`: upcoming appointments and what each patient answered (OUI /
NON), as the console's calendar page shows them, times in each calendar's zone.

It adds its command to the ``reminders`` group of hub.cli.calendars; hub.cli.main imports it
for that."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlmodel import Session, select

from hub.cli.calendars import AccountFilterOpt, CalendarFilterOpt, SoonestLimitOpt, reminders_app
from hub.cli.common import JsonOpt, emit, run_db, table
from hub.core.timeutil import as_utc, local_text
from hub.errors import NotFound
from hub.reminders.answers import (
    ANSWER_FILTERS,
    answer_text,
    upcoming_appointments,
    written_text,
)
from hub.sending.accounts import get_account
from hub.store.models import Calendar


@reminders_app.command("answers")
def reminders_answers(
    answer: Annotated[
        str,
        typer.Option(help=f"Which appointments: {', '.join(ANSWER_FILTERS)}."),
    ] = "all",
    calendar: CalendarFilterOpt = None,
    account: AccountFilterOpt = None,
    limit: SoonestLimitOpt = 100,
    as_json: JsonOpt = False,
) -> None:
    """Upcoming appointments with a mobile number and the patient's answer to the reminder
    (confirmed, cancelled, unanswered), soonest first. Text shows each calendar's local
    time; --json gives UTC ISO times and the zone."""

    def _do(session: Session) -> list[dict[str, Any]]:
        account_id = get_account(session, account).id if account else None
        calendar_id = None
        if calendar:
            query = select(Calendar).where(Calendar.name == calendar)
            if account_id is not None:
                query = query.where(Calendar.account_id == account_id)
            found = session.exec(query).first()
            if found is None:
                where = f" in account {account!r}" if account else ""
                raise NotFound(f"no calendar {calendar!r}{where} (see `smshub calendars list`)")
            calendar_id = found.id
        rows = upcoming_appointments(
            session, calendar_id=calendar_id, account_id=account_id, answer=answer, limit=limit
        )
        return [
            {
                "calendar": c.name,
                "timezone": c.timezone,
                "start": as_utc(e.start).isoformat(),
                "start_local": local_text(e.start, c.timezone, e.all_day),
                "title": e.title,
                "person": e.person,
                "phone": e.phone,
                "answer": e.answer or "unanswered",
                "answered_at": as_utc(e.answer_at).isoformat() if e.answer_at else None,
                "answer_text": answer_text(e),
                "calendar_write": written_text(e),
            }
            for e, c in rows
        ]

    data = run_db(_do)
    text = table(
        [
            [d["start_local"], d["calendar"], d["phone"], d["person"], d["title"][:40], d["answer"]]
            for d in data
        ],
        ["APPOINTMENT", "CALENDAR", "TO", "WHO", "TITLE", "ANSWER"],
    )
    emit(data, as_json, text if data else f"no upcoming appointment ({answer})")
