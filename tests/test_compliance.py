"""Campaign rules: marketing hours, the opt-out mention and per-country sender ids.

Every moment is an explicit UTC datetime: nothing here reads the clock or sleeps.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hub import compliance
from hub.compliance import (
    DEFAULT_SENDER_RULE,
    SENDER_RULES,
    MarketingHours,
    NoMarketingWindow,
    OptOutMention,
    OutsideMarketingHours,
    SenderRule,
    billable_text,
    check_sender,
    has_mention,
    is_allowed,
    is_public_holiday,
    marketing_due_at,
    next_allowed_time,
    preview,
    require_sender,
    time_zones,
    with_optout_mention,
)
from hub.compliance import hours as hours_module
from hub.core import segments
from hub.errors import InvalidInput
from hub.store.models import MessageType

RULES = MarketingHours()
MENTION = OptOutMention()
PARIS = ZoneInfo("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def paris(*args: int) -> datetime:
    """A Paris wall-clock time as an aware UTC datetime."""
    return datetime(*args, tzinfo=PARIS).astimezone(UTC)


# -- marketing hours: France ----------------------------------------------------------------


def test_french_number_at_0730_utc_in_winter_is_0830_paris_and_allowed():
    assert is_allowed(utc(2025, 1, 6, 7, 30), "FR", RULES)  # Monday
    assert next_allowed_time(utc(2025, 1, 6, 7, 30), "FR", RULES) == utc(2025, 1, 6, 7, 30)


def test_before_0800_local_waits_for_0800():
    assert not is_allowed(utc(2025, 1, 6, 6, 59), "FR", RULES)  # 07:59 Paris
    assert next_allowed_time(utc(2025, 1, 6, 6, 59), "FR", RULES) == utc(2025, 1, 6, 7, 0)
    assert is_allowed(utc(2025, 1, 6, 7, 0), "FR", RULES)  # 08:00 sharp is in


def test_saturday_1959_allowed_2000_refused_until_monday_0800():
    saturday_1959 = paris(2025, 1, 11, 19, 59)
    saturday_2000 = paris(2025, 1, 11, 20, 0)
    assert is_allowed(saturday_1959, "FR", RULES)
    assert next_allowed_time(saturday_1959, "FR", RULES) == saturday_1959
    assert not is_allowed(saturday_2000, "FR", RULES)
    assert next_allowed_time(saturday_2000, "FR", RULES) == paris(2025, 1, 13, 8, 0)


def test_sunday_waits_for_monday():
    sunday_noon = paris(2025, 1, 12, 12, 0)
    assert not is_allowed(sunday_noon, "FR", RULES)
    assert next_allowed_time(sunday_noon, "FR", RULES) == paris(2025, 1, 13, 8, 0)


def test_saturday_evening_before_a_holiday_monday_waits_for_tuesday():
    # Easter Monday 2025 is 21 April.
    saturday_2000 = paris(2025, 4, 19, 20, 0)
    assert next_allowed_time(saturday_2000, "FR", RULES) == paris(2025, 4, 22, 8, 0)
    assert next_allowed_time(saturday_2000, "FR", RULES) == utc(2025, 4, 22, 6, 0)


def test_14_july_in_france_but_not_in_switzerland():
    morning = paris(2025, 7, 14, 10, 0)  # a Monday
    assert is_public_holiday(morning.date(), "FR")
    assert not is_allowed(morning, "FR", RULES)
    assert next_allowed_time(morning, "FR", RULES) == paris(2025, 7, 15, 8, 0)
    assert is_allowed(morning, "CH", RULES)


def test_swiss_national_day_and_christmas():
    zurich = ZoneInfo("Europe/Zurich")
    national_day = datetime(2025, 8, 1, 10, 0, tzinfo=zurich)  # a Friday
    assert not is_allowed(national_day, "CH", RULES)
    assert next_allowed_time(national_day, "CH", RULES) == datetime(2025, 8, 2, 8, 0, tzinfo=zurich)
    christmas = datetime(2025, 12, 25, 9, 0, tzinfo=zurich)  # a Thursday
    assert not is_allowed(christmas, "CH", RULES)
    # 26 December is cantonal, not national: only national holidays count.
    assert next_allowed_time(christmas, "CH", RULES) == datetime(2025, 12, 26, 8, 0, tzinfo=zurich)


def test_public_holidays_can_be_ignored():
    rules = MarketingHours(public_holidays=False)
    assert is_allowed(paris(2025, 7, 14, 10, 0), "FR", rules)


def test_lowercase_country_codes_work():
    assert not is_allowed(paris(2025, 7, 14, 10, 0), "fr", RULES)


# -- marketing hours: DST ----------------------------------------------------------------------


def test_spring_dst_change_moves_0800_paris_from_0700_to_0600_utc():
    # Last Sunday of March 2025 is the 30th: Saturday is CET, Monday CEST.
    assert next_allowed_time(utc(2025, 3, 29, 6, 30), "FR", RULES) == utc(2025, 3, 29, 7, 0)
    saturday_evening = utc(2025, 3, 29, 19, 30)  # 20:30 CET
    assert next_allowed_time(saturday_evening, "FR", RULES) == utc(2025, 3, 31, 6, 0)
    assert is_allowed(utc(2025, 3, 31, 6, 0), "FR", RULES)
    assert not is_allowed(utc(2025, 3, 28, 6, 0), "FR", RULES)  # Friday 07:00 CET


def test_autumn_dst_change_moves_0800_paris_from_0600_to_0700_utc():
    # Last Sunday of October 2025 is the 26th.
    assert is_allowed(utc(2025, 10, 24, 6, 30), "FR", RULES)  # Friday 08:30 CEST
    assert not is_allowed(utc(2025, 10, 27, 6, 30), "FR", RULES)  # Monday 07:30 CET
    saturday_2000 = utc(2025, 10, 25, 18, 0)  # 20:00 CEST
    assert next_allowed_time(saturday_2000, "FR", RULES) == utc(2025, 10, 27, 7, 0)
    # 20:00 local is 19:00 UTC again on the Monday.
    assert is_allowed(utc(2025, 10, 27, 18, 59), "FR", RULES)
    assert not is_allowed(utc(2025, 10, 27, 19, 0), "FR", RULES)


# -- marketing hours: countries with several time zones ----------------------------------------


def test_us_number_uses_its_own_zone():
    new_jersey = "+12015550123"
    assert time_zones("US", new_jersey) == ("America/New_York",)
    # 12:59 UTC in January is 07:59 EST.
    moment = utc(2025, 1, 6, 12, 59)
    assert not is_allowed(moment, "US", RULES, number=new_jersey)
    assert next_allowed_time(moment, "US", RULES, number=new_jersey) == utc(2025, 1, 6, 13, 0)
    los_angeles = "+12135550123"
    assert next_allowed_time(moment, "US", RULES, number=los_angeles) == utc(2025, 1, 6, 16, 0)


def test_us_without_a_number_needs_the_window_in_every_zone():
    # Opens when Honolulu reaches 08:00 (18:00 UTC), closes when New York reaches 20:00.
    assert next_allowed_time(utc(2025, 1, 6, 13, 0), "US", RULES) == utc(2025, 1, 6, 18, 0)
    assert is_allowed(utc(2025, 1, 7, 0, 59), "US", RULES)  # Mon 19:59 EST, 14:59 HST
    assert not is_allowed(utc(2025, 1, 7, 1, 0), "US", RULES)  # Mon 20:00 EST
    assert next_allowed_time(utc(2025, 1, 7, 1, 0), "US", RULES) == utc(2025, 1, 7, 18, 0)


def test_us_holiday_uses_the_local_date():
    new_york = "+12015550123"
    # 4 July 2025 is a Friday; the next morning is Saturday 08:00 EDT.
    july_4 = utc(2025, 7, 4, 15, 0)
    assert next_allowed_time(july_4, "US", RULES, number=new_york) == utc(2025, 7, 5, 12, 0)
    # 02:00 UTC on 5 July is still 4 July, 22:00, in New York: a holiday evening.
    assert not is_allowed(utc(2025, 7, 5, 2, 0), "US", RULES, number=new_york)


def test_russia_keeps_only_the_hours_common_to_kaliningrad_and_kamchatka():
    # A mobile number tells no zone: phonenumbers lists every +7 zone, Kazakh and
    # Romanian ones included, so the whole country counts.
    assert "Europe/Kaliningrad" in time_zones("RU", "+79123456789")
    assert "Europe/Bucharest" not in time_zones("RU", "+79123456789")
    # Kaliningrad (UTC+2) opens at 06:00 UTC, Kamchatka (UTC+12) closes at 08:00 UTC.
    tuesday = (2025, 2, 4)
    assert not is_allowed(utc(*tuesday, 5, 59), "RU", RULES)
    assert is_allowed(utc(*tuesday, 6, 0), "RU", RULES)
    assert is_allowed(utc(*tuesday, 7, 59), "RU", RULES)
    assert next_allowed_time(utc(*tuesday, 8, 0), "RU", RULES) == utc(2025, 2, 5, 6, 0)


def test_number_zones_outside_the_country_are_not_trusted():
    assert time_zones("FR") == ("Europe/Paris",)
    assert time_zones("ES", "+34922123456") == ("Atlantic/Canary",)
    assert set(time_zones("ES", "+34612345678")) <= set(time_zones("ES"))
    assert time_zones(None) == ()


def test_country_zones_without_zone_tab_come_from_phonenumbers(monkeypatch):
    def clear() -> None:
        for cached in (
            hours_module._zone_table,
            hours_module.country_time_zones,
            hours_module.time_zones,
        ):
            cached.cache_clear()

    monkeypatch.setattr(hours_module, "_zone_tab_text", lambda: "")
    clear()
    try:
        assert hours_module.country_time_zones("FR") == ("Europe/Paris",)
        assert hours_module.country_time_zones("CH") == ("Europe/Zurich",)
    finally:
        monkeypatch.undo()
        clear()
    assert "Europe/Kaliningrad" in hours_module.country_time_zones("RU")


def test_numbers_without_a_country_use_the_fallback_zone():
    assert not is_allowed(utc(2025, 1, 6, 7, 59), None, RULES)
    assert next_allowed_time(utc(2025, 1, 6, 7, 59), None, RULES) == utc(2025, 1, 6, 8, 0)
    tokyo = MarketingHours(fallback_time_zone="Asia/Tokyo")
    # 11:00 UTC is 20:00 in Tokyo; Tuesday 08:00 there is 23:00 UTC on Monday.
    assert next_allowed_time(utc(2025, 1, 6, 11, 0), None, tokyo) == utc(2025, 1, 6, 23, 0)


def test_naive_and_non_utc_moments_are_read_as_instants():
    naive = datetime(2025, 1, 6, 7, 30)
    assert next_allowed_time(naive, "FR", RULES) == utc(2025, 1, 6, 7, 30)
    local = datetime(2025, 1, 6, 8, 30, tzinfo=PARIS)
    result = next_allowed_time(local, "FR", RULES)
    assert result == local and result.tzinfo is UTC


def test_custom_days_and_hours():
    weekdays_9_to_18 = MarketingHours(
        start=time(9), end=time(18), days=("mon", "tue", "wed", "thu", "fri")
    )
    saturday = paris(2025, 1, 11, 10, 0)
    assert not is_allowed(saturday, "FR", weekdays_9_to_18)
    assert next_allowed_time(saturday, "FR", weekdays_9_to_18) == paris(2025, 1, 13, 9, 0)
    every_day = MarketingHours(days=("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
    assert is_allowed(paris(2025, 1, 12, 12, 0), "FR", every_day)


def test_rules_that_leave_no_window_are_an_error():
    narrow = MarketingHours(start=time(9), end=time(10))
    assert next_allowed_time(utc(2025, 2, 4, 3, 0), "FR", narrow) == utc(2025, 2, 4, 8, 0)
    with pytest.raises(NoMarketingWindow, match="every time zone of RU"):
        next_allowed_time(utc(2025, 2, 4, 3, 0), "RU", narrow)


# -- marketing hours: defer or refuse -----------------------------------------------------------


def test_defer_returns_the_next_allowed_moment():
    sunday = paris(2025, 1, 12, 12, 0)
    assert marketing_due_at(sunday, "FR", RULES) == paris(2025, 1, 13, 8, 0)
    monday = paris(2025, 1, 13, 9, 0)
    assert marketing_due_at(monday, "FR", RULES) == monday


def test_refuse_raises_a_clear_error_inside_hours_passes():
    refuse = MarketingHours(outside_hours="refuse")
    monday = paris(2025, 1, 13, 9, 0)
    assert marketing_due_at(monday, "FR", refuse) == monday
    with pytest.raises(OutsideMarketingHours) as info:
        marketing_due_at(paris(2025, 1, 11, 20, 0), "FR", refuse)
    message = str(info.value)
    assert isinstance(info.value, InvalidInput)
    assert "FR numbers" in message and "08:00-20:00" in message
    assert "Saturday 2025-01-11 20:00 (Europe/Paris)" in message
    assert "Monday 2025-01-13 08:00 (Europe/Paris)" in message


def test_refusal_names_a_zone_that_refuses():
    refuse = MarketingHours(outside_hours="refuse")
    # 13:00 UTC is 08:00 in New York but earlier everywhere west of it.
    with pytest.raises(OutsideMarketingHours) as info:
        marketing_due_at(utc(2025, 1, 6, 13, 0), "US", refuse)
    found = re.search(r"\(([\w/]+)\) is outside them", str(info.value))
    assert found is not None
    zone = found.group(1)
    assert zone in time_zones("US") and zone != "America/New_York"
    assert utc(2025, 1, 6, 13, 0).astimezone(ZoneInfo(zone)).time() < time(8)


# -- marketing hours: configuration ---------------------------------------------------------


def test_hours_parse_from_toml_values():
    rules = MarketingHours.model_validate(
        {"start": "09:30", "end": time(19, 0), "days": ["sat", "mon", "mon"]}
    )
    assert rules.start == time(9, 30) and rules.end == time(19, 0)
    assert rules.days == ("mon", "sat")
    assert rules.describe() == ("09:30-19:00 local time, Monday, Saturday, not on public holidays")
    assert RULES.describe() == (
        "08:00-20:00 local time, Monday to Saturday, not on public holidays"
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"start": "20:00", "end": "08:00"}, "must be before end"),
        ({"days": []}, "at least one day"),
        ({"days": ["monday"]}, "days"),
        ({"fallback_time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"outside_hours": "drop"}, "outside_hours"),
        ({"start": "08:00+01:00"}, "without offset"),
        ({"stop": "20:00"}, "stop"),
    ],
)
def test_bad_hours_are_refused(data, fragment):
    with pytest.raises(ValidationError, match=fragment):
        MarketingHours.model_validate(data)


# -- marketing hours: properties ------------------------------------------------------------

COUNTRIES = ["FR", "CH", "BE", "DE", "GB", "US", "CA", "RU", "AU", "BR", "NZ", "CL", None]
RULE_SETS = [
    RULES,
    MarketingHours(start=time(9), end=time(18), days=("mon", "tue", "wed", "thu", "fri")),
    MarketingHours(start=time(7, 30), end=time(21, 45), public_holidays=False),
]
moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def _oracle(moment: datetime, country: str | None, rules: MarketingHours) -> bool:
    """The rule in words, checked the slow obvious way: wall clock in every zone."""
    names = time_zones(country) or (rules.fallback_time_zone,)
    for name in names:
        local = moment.astimezone(ZoneInfo(name))
        if compliance.hours.WEEKDAYS[local.weekday()] not in rules.days:
            return False
        if rules.public_holidays and is_public_holiday(local.date(), country):
            return False
        if not rules.start <= local.time() < rules.end:
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(moment=moments, country=st.sampled_from(COUNTRIES), rules=st.sampled_from(RULE_SETS))
def test_next_allowed_time_is_the_first_allowed_moment(moment, country, rules):
    try:
        result = next_allowed_time(moment, country, rules)
    except NoMarketingWindow:
        # Only right when the window really never holds everywhere at once (a 9-hour
        # window cannot span Russia's 10 hours of zones): nothing in a week is allowed.
        quarter_hours = (moment + timedelta(minutes=15 * k) for k in range(7 * 24 * 4))
        assert not any(_oracle(t, country, rules) for t in quarter_hours)
        return
    assert result >= moment
    assert result.tzinfo is UTC
    assert is_allowed(result, country, rules) and _oracle(result, country, rules)
    assert next_allowed_time(result, country, rules) == result
    assert (
        is_allowed(moment, country, rules) == (result == moment) == _oracle(moment, country, rules)
    )
    if result > moment:
        # Nothing in between is allowed: sample evenly, plus the instant just before.
        gap = result - moment
        for k in range(20):
            between = moment + gap * k / 20
            assert not _oracle(between, country, rules), between
        assert not _oracle(result - timedelta(microseconds=1), country, rules)


@settings(max_examples=150, deadline=None)
@given(moment=moments, country=st.sampled_from(COUNTRIES))
def test_is_allowed_matches_the_wall_clock_rule(moment, country):
    assert is_allowed(moment, country, RULES) == _oracle(moment, country, RULES)


# -- opt-out mention ------------------------------------------------------------------------


def test_marketing_from_a_name_gets_the_mention_on_its_own_line():
    assert with_optout_mention("Soldes -20%", "ACME", "marketing", MENTION) == (
        "Soldes -20%\nSTOP au 36173"
    )


def test_the_mention_is_counted_in_the_segments():
    text = "x" * 155
    assert segments.count(text).segments == 1
    final = billable_text(text, "ACME", "marketing", MENTION)
    assert final == text + "\nSTOP au 36173"
    assert segments.count(final).segments == 2
    # 146 + 1 + 13 = 160 septets still fit one SMS; one more character does not.
    assert segments.count(billable_text("x" * 146, "ACME", "marketing", MENTION)).segments == 1
    assert segments.count(billable_text("x" * 147, "ACME", "marketing", MENTION)).segments == 2


def test_the_mention_follows_the_text_encoding():
    final = billable_text("Soldes 😀", "ACME", "marketing", MENTION)
    info = segments.count(final)
    assert info.encoding == segments.UCS2
    assert info.length == len("Soldes ") + 2 + 1 + len("STOP au 36173")


@pytest.mark.parametrize(
    ("sender", "type", "appended"),
    [
        ("ACME", "marketing", True),
        ("ACME", "alert", False),
        ("+33612345678", "marketing", False),
        ("36173", "marketing", False),
        (None, "marketing", False),
        ("", "marketing", False),
        ("ACME", MessageType.MARKETING, True),
        ("ACME", MessageType.ALERT, False),
    ],
)
def test_who_gets_the_mention(sender, type, appended):
    assert (with_optout_mention("Promo", sender, type, MENTION) != "Promo") is appended


def test_numeric_senders_can_get_it_too():
    numeric_too = OptOutMention(append_for_numeric_sender=True)
    for sender in ("+33612345678", "36173", None):
        assert with_optout_mention("Promo", sender, "marketing", numeric_too).endswith(
            "\nSTOP au 36173"
        )
    assert with_optout_mention("Promo", "+33612345678", "alert", numeric_too) == "Promo"


@pytest.mark.parametrize(
    "text",
    [
        "Soldes -20% STOP au 36173",
        "STOP au 36173 : Soldes -20%",
        "Soldes -20%\nstop  AU\t36173",
    ],
)
def test_a_text_that_already_has_the_mention_keeps_its_own(text):
    assert has_mention(text, "STOP au 36173")
    assert with_optout_mention(text, "ACME", "marketing", MENTION) == text


def test_another_stop_instruction_does_not_replace_the_mention():
    text = "Soldes -20% STOP au 36180"
    assert with_optout_mention(text, "ACME", "marketing", MENTION) == text + "\nSTOP au 36173"


def test_trailing_whitespace_goes_before_the_mention():
    assert with_optout_mention("Promo  \n", "ACME", "marketing", MENTION) == "Promo\nSTOP au 36173"


def test_custom_and_empty_mentions():
    custom = OptOutMention(text="  Desinscription: STOP au 36180 ")
    assert with_optout_mention("Promo", "ACME", "marketing", custom) == (
        "Promo\nDesinscription: STOP au 36180"
    )
    off = OptOutMention(text="")
    assert with_optout_mention("Promo", "ACME", "marketing", off) == "Promo"
    assert not has_mention("anything", "")


def test_empty_text_stays_empty_so_it_is_still_refused():
    assert with_optout_mention("", "ACME", "marketing", MENTION) == ""
    assert with_optout_mention("  ", "ACME", "marketing", MENTION) == "  "


def test_unknown_type_is_a_programming_error():
    with pytest.raises(ValueError, match="alert' or 'marketing"):
        with_optout_mention("Promo", "ACME", "promo", MENTION)


def test_mention_config_is_strict():
    with pytest.raises(ValidationError):
        OptOutMention.model_validate({"txt": "STOP"})


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=1, max_size=400).filter(lambda t: t.strip()))
def test_billable_text_always_carries_the_mention_once(text):
    final = billable_text(text, "ACME", "marketing", MENTION)
    assert has_mention(final, MENTION.text)
    assert final.startswith(text.rstrip())
    assert billable_text(final, "ACME", "marketing", MENTION) == final
    assert billable_text(text, "ACME", "alert", MENTION) == text


# -- sender ids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "country", "ok", "fragment"),
    [
        # France: 11 letters and digits.
        ("ACME", "FR", True, None),
        ("AcmePromo11", "FR", True, None),
        ("AcmePromo123", "FR", False, "at most 11 characters, this one has 12"),
        ("ACME PROMO", "FR", False, "not ' '"),
        ("Café", "FR", False, "not 'é'"),
        ("ACME-SHOP", "FR", False, "letters A-Z and digits only"),
        ("36173", "FR", True, None),
        ("+33612345678", "FR", True, None),
        ("ACME", "fr", True, None),
        # Belgium: numbers only.
        ("ACME", "BE", False, "only numeric senders"),
        ("+32470123456", "BE", True, None),
        ("8810", "BE", True, None),
        # Switzerland: free.
        ("ACME Shop", "CH", True, None),
        ("A&B.ch", "CH", True, None),
        ("+41791234567", "CH", True, None),
        # North America: numbers only.
        ("ACME", "US", False, "US carriers"),
        ("ACME", "CA", False, "Canadian carriers"),
        ("+12015550123", "US", True, None),
        # Everywhere else: the conservative default.
        ("ACME-SHOP", "DE", True, None),
        ("ACME_SHOP!", "DE", False, "not '!'"),
        ("ACMESHOPPING", None, False, "at most 11"),
        ("12.34", "DE", False, "at least one letter"),
        (" ACME", "DE", False, "start or end with a space"),
        ("12", "DE", False, "3 to 15 digits, not 2"),
        ("1234567890123456", "DE", False, "not 16"),
        ("+491512345678", "ZZ", True, None),
        # No sender: the provider's default.
        (None, "BE", True, None),
        ("", "FR", True, None),
    ],
)
def test_sender_rules(sender, country, ok, fragment):
    check = check_sender(sender, country)
    assert check.ok is ok, check.reason
    if fragment is None:
        assert check.reason is None
    else:
        assert fragment in (check.reason or "")
        assert repr(sender) in (check.reason or "")


def test_refusals_name_the_country_and_the_reason():
    check = check_sender("ACME", "BE")
    assert check.reason == (
        "sender 'ACME' cannot be used for BE numbers: only numeric senders are delivered "
        "there (Belgian operators deliver numeric senders only)"
    )
    assert "unknown country" in (check_sender("ACME!", None).reason or "")


def test_names_warn_that_nobody_can_reply():
    check = check_sender("ACME", "FR")
    assert check.kind == "name"
    assert len(check.warnings) == 1 and "cannot reply" in check.warnings[0]


def test_numbers_warn_only_when_unknown():
    assert check_sender("+33612345678", "FR").warnings == []
    assert check_sender("36173", "FR").warnings == []  # a French short code
    unknown = check_sender("12345", "FR")
    assert unknown.ok and unknown.kind == "number"
    assert "neither a valid phone number nor a known short code in FR" in unknown.warnings[0]


def test_no_sender_is_the_providers_default():
    check = check_sender(None, "FR")
    assert check.to_dict() == {"ok": True, "reason": None, "warnings": [], "kind": "none"}


def test_the_rule_table_is_well_formed():
    for country, rule in SENDER_RULES.items():
        assert len(country) == 2 and country.isupper()
        assert rule.note, f"{country} rule says why"
        assert rule.names or rule.numbers
    assert DEFAULT_SENDER_RULE.names and DEFAULT_SENDER_RULE.numbers


def test_the_table_can_be_extended():
    rules = {**SENDER_RULES, "XX": SenderRule(name_max=6, note="made up")}
    assert check_sender("ACMESHOP", "DE", rules).ok
    refused = check_sender("ACMESHOP", "XX", rules)
    assert (
        not refused.ok
        and "at most 6" in (refused.reason or "")
        and "made up" in (refused.reason or "")
    )


def test_require_sender_checks_every_country():
    warnings = require_sender("ACME", ["FR", "fr", "CH", None])
    assert len(warnings) == 1 and "cannot reply" in warnings[0]
    with pytest.raises(InvalidInput, match="BE numbers"):
        require_sender("ACME", ["FR", "BE"])
    assert require_sender(None, ["BE", "US"]) == []


# -- preview ----------------------------------------------------------------------------------


def test_preview_shows_what_the_send_charges():
    text = "x" * 155
    shown = preview(text, "ACME", "marketing", "FR")
    assert shown["text"] == text + "\nSTOP au 36173"
    assert shown["mention_added"] is True
    assert shown["segments"] == 2 and shown["encoding"] == "GSM-7"
    assert "".join(shown["parts"]) == shown["text"]
    assert shown["ok"] is True and shown["errors"] == []
    assert any("1 part(s) become 2" in w for w in shown["warnings"])
    assert any("cannot reply" in w for w in shown["warnings"])
    assert shown["schedule"] is None


def test_preview_of_an_alert_is_the_plain_count():
    shown = preview("Votre RDV demain 9h", "+33612345678", "alert", "FR")
    assert shown["text"] == "Votre RDV demain 9h"
    assert shown["mention_added"] is False
    assert {k: shown[k] for k in ("encoding", "segments", "characters", "length")} == {
        k: v for k, v in segments.count("Votre RDV demain 9h").to_dict().items() if k != "remaining"
    }
    assert shown["warnings"] == [] and shown["ok"]


def test_preview_reports_refused_senders():
    shown = preview("Promo", "ACME", "marketing", "BE")
    assert shown["ok"] is False
    assert "only numeric senders" in shown["errors"][0]


def test_preview_says_when_a_marketing_sms_would_go():
    sunday = paris(2025, 1, 12, 12, 0)
    shown = preview("Promo", "ACME", "marketing", "FR", at=sunday)
    assert shown["schedule"] == {
        "requested": sunday.isoformat(),
        "due": paris(2025, 1, 13, 8, 0).isoformat(),
        "next_allowed": paris(2025, 1, 13, 8, 0).isoformat(),
        "deferred": True,
    }
    assert any("would wait until" in w for w in shown["warnings"])
    refused = preview(
        "Promo",
        "ACME",
        "marketing",
        "FR",
        at=sunday,
        hours=MarketingHours(outside_hours="refuse"),
    )
    assert refused["ok"] is False and refused["schedule"]["due"] is None
    assert "refused" in refused["errors"][0]
    assert preview("Promo", "ACME", "alert", "FR", at=sunday)["schedule"] is None
