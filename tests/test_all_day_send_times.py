"""``all_day.reminder_time`` looks up the send time of a rule with a time of day per local
date: it must be exactly ``rules.send_time`` for every appointment, whatever its time,
zone, DST change or quiet hours, on a first planning and when looked up again."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest

from hub.reminders import all_day
from hub.reminders.rules import Offset, QuietHours, parse_offsets, send_time

ZONES = ["Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia", "UTC"]
RULES = ["1d@09:00", "2d@02:30", "0d@07:15", "3d@23:59", "1d", "3h", "1d@00:00"]
QUIET = [
    QuietHours(),
    QuietHours(time(22, 0), time(7, 0)),
    QuietHours(time(0, 0), time(0, 0)),
    QuietHours(time(12, 0), time(14, 0)),
    QuietHours(time(2, 0), time(10, 0)),
]


def _reference(
    start: datetime, offset: Offset, tz: str, quiet: QuietHours, is_all_day: bool
) -> datetime | None:
    """reminder_time as written before the lookup: send_time for every appointment."""
    if not is_all_day:
        return send_time(start, offset, tz, quiet)
    if not all_day.applies(offset, is_all_day):
        return None
    if offset.at is None:
        offset = Offset(offset.text, offset.amount, offset.unit, all_day.day_time(quiet))
    return send_time(start, offset, tz, quiet)


# The 2026 DST changes (US, EU, Lord Howe's half hour), each with the days after it that
# rules of up to 3 days before reach back over.
_CHANGES = [(3, 8), (3, 29), (4, 5), (10, 4), (10, 25), (11, 1)]


def _starts(rng: random.Random) -> list[datetime]:
    starts = []
    for month, day in _CHANGES:
        first = datetime(2026, month, day, tzinfo=UTC) - timedelta(days=1)
        starts += [first + timedelta(minutes=60 * k + rng.randrange(60)) for k in range(24 * 5)]
    starts += [
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(366 * 86400))
        for _ in range(500)
    ]
    return starts


@pytest.mark.parametrize("zone", ZONES)
def test_same_send_times_as_send_time(zone: str) -> None:
    rng = random.Random(zone)
    starts = _starts(rng)
    all_day._AT_TIMES.clear()
    for rule in RULES:
        offset = parse_offsets(rule)[0]
        for quiet in QUIET:
            for is_all_day in (False, True):
                # Twice: computed, then looked up (and in another order the second time).
                for start in starts + rng.sample(starts, 200):
                    expected = _reference(start, offset, zone, quiet, is_all_day)
                    got = all_day.reminder_time(start, offset, zone, quiet, is_all_day)
                    assert got == expected, (start, rule, zone, quiet, is_all_day)
                    assert got is None or got.utcoffset() == timedelta(0)


def test_the_lookup_is_bounded() -> None:
    all_day._AT_TIMES.clear()
    offset = parse_offsets("1d@09:00")[0]
    first = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for day in range(all_day._MAX_AT_TIMES + 10):
        start = first + timedelta(days=day)
        when = all_day.reminder_time(start, offset, "Europe/Paris", QuietHours(), False)
        assert when == send_time(start, offset, "Europe/Paris", QuietHours())
    assert len(all_day._AT_TIMES) <= all_day._MAX_AT_TIMES
