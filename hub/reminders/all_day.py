"""Rules for all-day appointments: they have a date, no time.

An all-day event "starts" at midnight, so "3h before" would send at 21:00 the evening before
(moved out of quiet hours to 20:59) and a text would say "à 00:00". Hour and minute rules
(``3h``, ``30m``) therefore do not apply to it; day rules do, at their own time of day
(``2d@09:00``) or, for a plain ``Nd``, at DAY_TIME on that day, later if quiet hours still
run then (a morning reminder, not one at midnight). Timed events keep ``rules.send_time``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from hub.reminders.rules import Offset, QuietHours, send_time

# The time of day a plain "Nd" rule sends an all-day appointment's reminder.
DAY_TIME = time(9, 0)


def applies(offset: Offset, all_day: bool) -> bool:
    """Whether OFFSET plans a reminder for an appointment (all-day ones: day rules only)."""
    return not all_day or offset.unit == "d"


def not_applying(offsets: Iterable[Offset], all_day: bool) -> list[str]:
    """The rules of OFFSETS that do not apply to such an appointment."""
    return [o.text for o in offsets if not applies(o, all_day)]


def skip_note(rules: list[str]) -> str:
    """Why RULES plan nothing for an all-day appointment (the problems list, the preview)."""
    return (
        f"all-day appointment (no time of day): {', '.join(rules)} not sent, hour rules do "
        "not apply; day rules (1d, 2d@09:00) do"
    )


def day_time(quiet: QuietHours) -> time:
    """When a plain day rule sends: DAY_TIME, or the end of quiet hours that run past it."""
    if quiet.contains(DAY_TIME) and quiet.end > DAY_TIME and quiet.end.hour < 12:
        return quiet.end
    return DAY_TIME


def reminder_time(
    start: datetime, offset: Offset, tz: str, quiet: QuietHours, all_day: bool
) -> datetime | None:
    """When OFFSET's reminder for an appointment at START goes out (aware UTC); None when the
    rule does not apply (an hour rule and an all-day appointment)."""
    if not all_day:
        return _send_time(start, offset, tz, quiet)
    if not applies(offset, all_day):
        return None
    if offset.at is None:
        offset = Offset(offset.text, offset.amount, offset.unit, day_time(quiet))
    return _send_time(start, offset, tz, quiet)


# A rule with a time of day ("1d@09:00", the default, and every all-day rule) sends at a time
# that depends on the appointment's local date only: the day's appointments share it. Worked
# out once per (date, rule, zone, quiet hours) instead of once per appointment (~10 us each:
# zone conversions and DST handling). Bounded; the values are immutable and a race between
# threads only computes one twice.
_AT_TIMES: dict[tuple[date, int, time, str, time, time], datetime] = {}
_MAX_AT_TIMES = 4096


def _send_time(start: datetime, offset: Offset, tz: str, quiet: QuietHours) -> datetime:
    """``send_time``, looked up for a rule with a time of day."""
    if offset.at is None:
        return send_time(start, offset, tz, quiet)
    day = start.astimezone(ZoneInfo(tz)).date()
    key = (day, offset.amount, offset.at, tz, quiet.start, quiet.end)
    when = _AT_TIMES.get(key)
    if when is None:
        if len(_AT_TIMES) >= _MAX_AT_TIMES:
            _AT_TIMES.clear()
        when = _AT_TIMES[key] = send_time(start, offset, tz, quiet)
    return when
