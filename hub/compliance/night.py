"""Night hours for every send of an account (not only reminders and marketing).

An account may say that nothing it sends should arrive at night in the recipient's local
time: "hold" keeps such SMS until the night ends, "warn" sends them and says so; "off" (the
default) changes nothing. The night runs from START to END ("21:00"-"08:00" crosses
midnight); a number whose country has several time zones is in the night when any of them is,
and is held until it has ended in all of them.

Pure: the caller passes the moment and the recipient's zones (hub.compliance.hours.time_zones).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal, cast
from zoneinfo import ZoneInfo

from hub.errors import InvalidInput

Mode = Literal["off", "hold", "warn"]
MODES: tuple[Mode, ...] = ("off", "hold", "warn")


def parse_clock(label: str, value: str) -> time:
    """ "HH:MM" as a time; InvalidInput naming LABEL otherwise."""
    text = value.strip()
    try:
        hours, minutes = text.split(":")
        if len(minutes) != 2 or not hours.isdigit() or not minutes.isdigit():
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise InvalidInput(f"{label}: {text!r} is not a time of day such as 21:00") from None


@dataclass(frozen=True)
class NightHours:
    """An account's night hours: MODE between START and END, local to the recipient."""

    mode: Mode
    start: time
    end: time

    @classmethod
    def of(cls, mode: str, start: str, end: str) -> NightHours:
        """From an account's stored settings (checked when they were saved)."""
        if mode not in MODES:
            raise InvalidInput(f"Night hours: {mode!r} must be one of {', '.join(MODES)}")
        return cls(
            cast(Mode, mode), parse_clock("Night start", start), parse_clock("Night end", end)
        )

    def describe(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def is_night(self, local: time) -> bool:
        """True when the local time LOCAL is in the night."""
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def morning_after(self, at: datetime, zones: tuple[str, ...]) -> datetime | None:
        """None when AT (aware) is not at night in any of ZONES; else the first moment after
        it when the night has ended in every one of them (whatever the mode: the caller
        decides what to do about it)."""
        if not zones:
            return None
        infos = [ZoneInfo(z) for z in zones]
        moment = at
        # Each pass moves past one zone's night; a few passes settle any set of zones.
        for _ in range(2 * len(infos) + 2):
            moved = False
            for zone in infos:
                local = moment.astimezone(zone)
                if not self.is_night(local.time()):
                    continue
                end = datetime.combine(local.date(), self.end, tzinfo=zone)
                if end <= local:
                    end += timedelta(days=1)
                moment = end.astimezone(at.tzinfo)
                moved = True
            if not moved:
                break
        return moment if moment != at else None
