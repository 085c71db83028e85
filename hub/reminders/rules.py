"""When a reminder goes out: offsets like ``2d@09:00`` or ``3h``, quiet hours, late events.

``Nd@HH:MM``  N days before the appointment's local date, at HH:MM local time
``Nd``        N × 24 hours before          ``Nh`` N hours before        ``Nm`` N minutes before
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hub.errors import InvalidInput

_OFFSET = re.compile(r"^\s*(\d{1,3})\s*([dhm])\s*(?:@\s*(\d{1,2}):(\d{2}))?\s*$", re.I)


def rule_zone(event_zone: str | None, calendar_zone: str) -> str:
    """Where a rule's "09:00" is read: the event's own zone, else the calendar's (an event
    placed in UTC names no zone of its own)."""
    return event_zone if event_zone and event_zone != "UTC" else calendar_zone


@dataclass(frozen=True)
class Offset:
    """A parsed rule."""

    text: str
    amount: int
    unit: str  # d, h, m
    at: time | None = None  # local time of day, for "Nd@HH:MM"


def parse_offset(text: str) -> Offset:
    """Parse one rule; InvalidInput says what a valid one looks like."""
    m = _OFFSET.match(text)
    if not m:
        raise InvalidInput(
            f"reminder rule {text!r} is not understood; use e.g. 2d@09:00 (two days before at "
            "09:00), 1d (24 hours before), 3h or 30m"
        )
    amount, unit = int(m.group(1)), m.group(2).lower()
    at = None
    if m.group(3) is not None:
        if unit != "d":
            raise InvalidInput(f"reminder rule {text!r}: a time of day goes with days (2d@09:00)")
        hour, minute = int(m.group(3)), int(m.group(4))
        if hour > 23 or minute > 59:
            raise InvalidInput(f"reminder rule {text!r}: {hour:02d}:{minute:02d} is not a time")
        at = time(hour, minute)
    return Offset(text=text.strip().lower(), amount=amount, unit=unit, at=at)


def parse_offsets(text: str) -> list[Offset]:
    """A comma-separated list of rules."""
    rules = [parse_offset(part) for part in text.split(",") if part.strip()]
    if not rules:
        raise InvalidInput("give at least one reminder rule, e.g. 2d@09:00")
    return rules


def parse_hhmm(text: str, what: str) -> time:
    """'21:00' → time(21, 0)."""
    m = re.match(r"^(\d{1,2}):(\d{2})$", text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise InvalidInput(f"{what} {text!r} must be a time such as 21:00")
    return time(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class QuietHours:
    """No reminder between ``start`` and ``end`` local time (the window may span midnight)."""

    start: time = time(21, 0)
    end: time = time(8, 0)

    def contains(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def _local_at(day: datetime, at: time, tz: ZoneInfo) -> datetime:
    # fold=0 picks the first of two ambiguous times; a nonexistent one (spring forward)
    # normalizes forward through the UTC round trip.
    naive = datetime.combine(day.date(), at)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def send_time(start: datetime, offset: Offset, tz_name: str, quiet: QuietHours) -> datetime:
    """When the reminder for an appointment at START goes out (aware UTC).

    A time inside quiet hours moves earlier, to the last allowed minute before them.
    """
    tz = ZoneInfo(tz_name)
    local_start = start.astimezone(tz)
    if offset.at is not None:
        when = _local_at(local_start - timedelta(days=offset.amount), offset.at, tz)
    else:
        delta = {
            "d": timedelta(days=offset.amount),
            "h": timedelta(hours=offset.amount),
            "m": timedelta(minutes=offset.amount),
        }[offset.unit]
        when = (start - delta).astimezone(tz)
    if quiet.contains(when.timetz().replace(tzinfo=None)):
        # Back to the evening before the quiet window began.
        day = when if when.time() >= quiet.start else when - timedelta(days=1)
        when = _local_at(day, quiet.start, tz) - timedelta(minutes=1)
    return when.astimezone(UTC)
