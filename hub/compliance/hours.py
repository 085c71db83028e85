"""Marketing hours: when a marketing SMS may reach a phone in a given country.

A marketing SMS goes out only inside a daily window of the recipient's local time
(08:00-20:00 by default: the start is allowed, the end is not, so 19:59 goes and 20:00
waits), on the allowed weekdays (Monday to Saturday), and never on a public holiday of
the recipient's country. Alert SMS are not concerned: nothing here applies to them.

Whose local time
    The recipient's country's time zones come from the tz database's ``zone.tab`` (the
    system's, else the ``tzdata`` package's); without it, from phonenumbers. For a country
    with several zones (US, CA, BR, AU, RU, MX, ...) the number narrows them down when
    phonenumbers' ``time_zones_for_number`` answers with zones that all belong to that
    country (a US number's area code gives one zone). Otherwise every zone of the country
    counts and a moment is allowed only if it is allowed in *all* of them: the most
    conservative reading, the window of the zone where 08:00 comes last and 20:00 comes
    first, worked out instant by instant so DST and holidays of each zone's local date are
    right. Numbers without a country (+882, ...) use ``fallback_time_zone``.

Public holidays
    National holidays of the country from the ``holidays`` package (with the observed
    days it reports, e.g. a US holiday moved to Monday). Regional holidays are left out:
    a phone number does not tell the recipient's canton or state reliably. A country the
    package does not know has no holidays.

DST
    The window is wall-clock time: 08:00 in Paris is 07:00 UTC in winter and 06:00 UTC in
    summer. A window bound that falls in a skipped hour opens at the first instant after
    the gap; a bound inside a repeated hour (autumn) counts at its first occurrence. With
    windows during the day (as any sane marketing window is) neither ever happens.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import TZPATH, ZoneInfo, ZoneInfoNotFoundError

import holidays
import phonenumbers
from phonenumbers import NumberParseException
from phonenumbers import timezone as pn_timezone
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from hub.core.timeutil import as_utc
from hub.errors import NoMarketingWindow, OutsideMarketingHours

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# How far ahead the next allowed moment is looked for. The longest real run of closed
# days (Russia's New Year holidays plus a Sunday) is under two weeks; a year means the
# rules leave no window at all, which is a configuration error, not a date to wait for.
HORIZON = timedelta(days=370)


class MarketingHours(BaseModel):
    """When marketing SMS may go out, in the recipient's local time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Local time from which marketing SMS may go out (included).
    start: time = time(8, 0)
    # Local time from which they may no longer go out (excluded: 20:00 is too late).
    end: time = time(20, 0)
    # Days of the week on which they may go out.
    days: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat")
    # Keep them off the recipient country's (national) public holidays.
    public_holidays: bool = True
    # Outside the window: "defer" holds the SMS until the next allowed moment,
    # "refuse" rejects the submission with an error.
    outside_hours: Literal["defer", "refuse"] = "defer"
    # Time zone for numbers without a country (non-geographic numbers such as +882).
    fallback_time_zone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError('give a local time without offset, e.g. "08:00"')
        return value

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if not value:
            raise ValueError('name at least one day, e.g. ["mon", "tue"]')
        return tuple(sorted(set(value), key=WEEKDAYS.index))

    @field_validator("fallback_time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _window(self) -> MarketingHours:
        if self.start >= self.end:
            raise ValueError(
                f"start ({self.start:%H:%M}) must be before end ({self.end:%H:%M}); "
                "a window across midnight is not supported"
            )
        return self

    def describe(self) -> str:
        """The rules in words, for error messages ("08:00-20:00, Monday to Saturday, ...")."""
        indexes = [WEEKDAYS.index(d) for d in self.days]
        if indexes == list(range(indexes[0], indexes[-1] + 1)) and len(indexes) > 2:
            days = f"{_DAY_NAMES[indexes[0]]} to {_DAY_NAMES[indexes[-1]]}"
        else:
            days = ", ".join(_DAY_NAMES[i] for i in indexes)
        text = f"{self.start:%H:%M}-{self.end:%H:%M} local time, {days}"
        return text + (", not on public holidays" if self.public_holidays else "")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _loadable(names: Iterable[str]) -> tuple[str, ...]:
    """The names that are real, loadable zones, in order, once each."""
    kept: list[str] = []
    for name in names:
        if name in kept or name == pn_timezone.UNKNOWN_TIMEZONE:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        kept.append(name)
    return tuple(kept)


def _zone_tab_text() -> str:
    """zone.tab from where zoneinfo itself looks: TZPATH first, then the tzdata package."""
    for directory in TZPATH:
        try:
            return (Path(directory) / "zone.tab").read_text("utf-8")
        except OSError:
            continue
    try:
        return (importlib.resources.files("tzdata") / "zoneinfo" / "zone.tab").read_text("utf-8")
    except (ModuleNotFoundError, OSError):
        return ""


@functools.cache
def _zone_table() -> dict[str, tuple[str, ...]]:
    """ISO country -> its zones, from zone.tab (empty when no tz database ships one)."""
    table: dict[str, list[str]] = {}
    for line in _zone_tab_text().splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) >= 3:
            table.setdefault(fields[0].upper(), []).append(fields[2])
    return {country: _loadable(names) for country, names in table.items()}


@functools.lru_cache(maxsize=512)
def country_time_zones(country: str) -> tuple[str, ...]:
    """Every time zone of an ISO country (empty when unknown)."""
    country = country.upper()
    zones = _zone_table().get(country)
    if zones:
        return zones
    # No zone.tab: phonenumbers' zones of the country's example number are the best left.
    example = phonenumbers.example_number(country)
    if example is None:
        return ()
    return _loadable(pn_timezone.time_zones_for_number(example))


@functools.lru_cache(maxsize=8192)
def time_zones(country: str | None, number: str | None = None) -> tuple[str, ...]:
    """The zones whose local time rules for NUMBER in COUNTRY (empty when nothing is known)."""
    country_zones = country_time_zones(country) if country else ()
    if number:
        try:
            parsed = phonenumbers.parse(number, country)
        except NumberParseException:
            parsed = None
        if parsed is not None:
            own = _loadable(pn_timezone.time_zones_for_number(parsed))
            # phonenumbers answers per calling code when it cannot place the number (+7
            # lists Kazakh and Romanian zones for Russia): trust it only when it narrows
            # the country down. An alias spelled differently only costs precision.
            if own and (not country_zones or set(own) <= set(country_zones)):
                return own
    return country_zones


@functools.lru_cache(maxsize=2048)
def _holiday_dates(country: str, year: int) -> frozenset[date]:
    try:
        calendar = holidays.country_holidays(country, years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(calendar.keys())


def is_public_holiday(day: date, country: str | None) -> bool:
    """True when DAY is a national public holiday of COUNTRY (per the holidays package)."""
    if not country:
        return False
    return day in _holiday_dates(country.upper(), day.year)


Interval = tuple[datetime, datetime]


def _day_open(day: date, country: str | None, rules: MarketingHours) -> bool:
    if WEEKDAYS[day.weekday()] not in rules.days:
        return False
    return not (rules.public_holidays and is_public_holiday(day, country))


def _window(day: date, zone: ZoneInfo, rules: MarketingHours) -> Interval:
    """The UTC instants at which DAY's window opens and closes in ZONE."""
    # fold=0 puts a time skipped by DST at the first instant after the gap and a
    # repeated time at its first occurrence (see the module docstring).
    opens = datetime.combine(day, rules.start, tzinfo=zone).astimezone(UTC)
    closes = datetime.combine(day, rules.end, tzinfo=zone).astimezone(UTC)
    return opens, closes


def _zone_intervals(
    day_start: datetime, zone: ZoneInfo, country: str | None, rules: MarketingHours
) -> list[Interval]:
    """ZONE's allowed instants within the UTC day starting at DAY_START, in order."""
    day_end = day_start + timedelta(days=1)
    local = day_start.astimezone(zone).date()
    last = day_end.astimezone(zone).date()
    found: list[Interval] = []
    while local <= last:
        if _day_open(local, country, rules):
            opens, closes = _window(local, zone, rules)
            opens, closes = max(opens, day_start), min(closes, day_end)
            if opens < closes:
                found.append((opens, closes))
        local += timedelta(days=1)
    return found


def _intersect(left: list[Interval], right: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        opens = max(left[i][0], right[j][0])
        closes = min(left[i][1], right[j][1])
        if opens < closes:
            out.append((opens, closes))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return out


@functools.lru_cache(maxsize=4096)
def _day_intervals(
    day: date, zones: tuple[ZoneInfo, ...], country: str | None, rules: MarketingHours
) -> tuple[Interval, ...]:
    """The instants of UTC day DAY at which every zone of ZONES allows marketing SMS."""
    # Worked out once per UTC day and zone set: a submission to 10,000 US numbers asks
    # the same question 10,000 times, and 29 zones are too many to redo it each time.
    day_start = datetime.combine(day, time(0), tzinfo=UTC)
    common: list[Interval] | None = None
    for zone in zones:
        found = _zone_intervals(day_start, zone, country, rules)
        common = found if common is None else _intersect(common, found)
        if not common:
            break
    return tuple(common or ())


def _next(
    moment: datetime, zones: tuple[ZoneInfo, ...], country: str | None, rules: MarketingHours
) -> datetime | None:
    """The first instant at or after MOMENT (UTC) allowed in every zone; None past HORIZON."""
    day = moment.date()
    last = (moment + HORIZON).date()
    while day <= last:
        for opens, closes in _day_intervals(day, zones, country, rules):
            if moment < closes:
                return max(moment, opens)
        day += timedelta(days=1)
    return None


@functools.lru_cache(maxsize=256)
def _zone_infos(names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
    return tuple(ZoneInfo(name) for name in names)


def _zones_for(
    country: str | None, number: str | None, rules: MarketingHours
) -> tuple[ZoneInfo, ...]:
    return _zone_infos(time_zones(country, number) or (rules.fallback_time_zone,))


def _country(country: str | None) -> str | None:
    return country.upper() if country else None


def is_allowed(
    moment: datetime, country: str | None, rules: MarketingHours, *, number: str | None = None
) -> bool:
    """True when a marketing SMS may reach a phone of COUNTRY (or NUMBER, E.164) at MOMENT."""
    utc = as_utc(moment)
    country = _country(country)
    return _next(utc, _zones_for(country, number, rules), country, rules) == utc


def next_allowed_time(
    moment: datetime, country: str | None, rules: MarketingHours, *, number: str | None = None
) -> datetime:
    """MOMENT (in UTC) if a marketing SMS may go out then, else the next moment it may.

    COUNTRY is the recipient's ISO code; NUMBER (E.164), when given, narrows a country
    with several time zones to the number's own. Naive datetimes are taken as UTC.
    Raises NoMarketingWindow when the rules leave no moment within a year.
    """
    start = as_utc(moment)
    country = _country(country)
    zones = _zones_for(country, number, rules)
    found = _next(start, zones, country, rules)
    if found is None:
        where = f"{country} ({len(zones)} zones)" if country else zones[0].key
        raise NoMarketingWindow(
            f"marketing hours ({rules.describe()}) leave no moment within a year that is "
            f"inside the window in every time zone of {where}; widen [marketing_hours]"
        )
    return found


def marketing_due_at(
    moment: datetime, country: str | None, rules: MarketingHours, *, number: str | None = None
) -> datetime:
    """When a marketing SMS asked for at MOMENT goes out, per ``rules.outside_hours``.

    MOMENT itself inside the hours; outside them the next allowed moment ("defer") or
    OutsideMarketingHours ("refuse"), whose message says the rules and the next moment.
    """
    due = next_allowed_time(moment, country, rules, number=number)
    start = as_utc(moment)
    if due == start or rules.outside_hours == "defer":
        return due
    country = _country(country)
    zones = _zones_for(country, number, rules)
    # Name the zone that refuses, so the message shows a local time that is really out.
    zone = next((z for z in zones if _next(start, (z,), country, rules) != start), zones[0])
    where = f"{country} numbers" if country else "numbers without a country"
    raise OutsideMarketingHours(
        f"marketing SMS to {where} may go out only {rules.describe()}; "
        f"{start.astimezone(zone):%A %Y-%m-%d %H:%M} ({zone.key}) is outside them. "
        f"The next allowed moment is {due.astimezone(zone):%A %Y-%m-%d %H:%M} ({zone.key}): "
        'schedule it then (or set marketing_hours.outside_hours = "defer")'
    )
