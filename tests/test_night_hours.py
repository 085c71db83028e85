"""Night hours for every send of an account (issue 17): off by default, "hold" keeps an SMS
that would arrive at night (recipient's local time) until the night ends, "warn" sends it
with a warning; set from `smshub accounts set` and the console account page, and the console's
send page warns when a send would arrive at night."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from hub.compliance.night import NightHours
from hub.core.timeutil import as_utc, utcnow
from hub.errors import InvalidInput
from hub.sending import account_settings
from hub.sending import submit as sending
from hub.store.db import session_scope
from hub.store.models import Account, Message
from tests.test_cli import smshub  # noqa: F401  (the CLI fixture)

PARIS = ZoneInfo("Europe/Paris")
FR = "+33612345678"


def _tonight() -> datetime:
    """23:30 in Paris, two days from now (a scheduled send)."""
    day = (utcnow() + timedelta(days=2)).astimezone(PARIS).date()
    return datetime.combine(day, time(23, 30), tzinfo=PARIS).astimezone(UTC)


def test_morning_after_crosses_midnight_and_every_zone():
    night = NightHours.of("hold", "21:00", "08:00")
    late = datetime(2026, 12, 6, 22, 30, tzinfo=PARIS)
    assert night.morning_after(late, ("Europe/Paris",)) == datetime(2026, 12, 7, 8, 0, tzinfo=PARIS)
    early = datetime(2026, 12, 7, 6, 0, tzinfo=PARIS)
    assert night.morning_after(early, ("Europe/Paris",)) == datetime(
        2026, 12, 7, 8, 0, tzinfo=PARIS
    )
    assert (
        night.morning_after(datetime(2026, 12, 7, 12, 0, tzinfo=PARIS), ("Europe/Paris",)) is None
    )
    # Paris and New York: held until it is 08:00 in New York (14:00 in Paris).
    both = night.morning_after(late, ("Europe/Paris", "America/New_York"))
    assert both is not None
    assert both.astimezone(ZoneInfo("America/New_York")).time() == time(8, 0)
    # A daytime night (e.g. 12:00-14:00) works too.
    lunch = NightHours.of("hold", "12:00", "14:00")
    assert lunch.morning_after(datetime(2026, 12, 7, 13, 0, tzinfo=PARIS), ("Europe/Paris",))


def _set(engine, mode: str, start: str = "21:00", end: str = "08:00") -> None:
    with session_scope(engine) as s:
        acc = s.exec(select(Account).where(Account.name == "acme")).one()
        account_settings.set_night(acc, mode, start, end)
        s.add(acc)


def _submit(engine, config, at: datetime) -> sending.SubmitResult:
    with session_scope(engine) as s:
        return sending.submit_in(
            s,
            config,
            sending.SubmitRequest(account="acme", recipients=[FR], text="Rappel", send_at=at),
        )


def _due(engine) -> datetime:
    with session_scope(engine) as s:
        return as_utc(s.exec(select(Message)).one().due_at)


def test_off_by_default_sends_at_night(engine, config, account):
    result = _submit(engine, config, _tonight())
    assert _due(engine) == _tonight()
    assert not any("night" in w for w in result.warnings)


def test_hold_waits_until_the_night_ends(engine, config, account):
    _set(engine, "hold")
    result = _submit(engine, config, _tonight())
    due = _due(engine).astimezone(PARIS)
    assert due.time() == time(8, 0) and due.date() == _tonight().astimezone(
        PARIS
    ).date() + timedelta(days=1)
    assert result.recipients[0].status == "scheduled"
    assert "night hours" in (result.recipients[0].reason or "")


def test_hold_leaves_daytime_sends_alone(engine, config, account):
    _set(engine, "hold")
    noon = _tonight().astimezone(PARIS).replace(hour=12, minute=0).astimezone(UTC)
    _submit(engine, config, noon)
    assert _due(engine) == noon


def test_warn_sends_with_a_warning(engine, config, account):
    _set(engine, "warn")
    result = _submit(engine, config, _tonight())
    assert _due(engine) == _tonight()
    assert any("arrive at night" in w for w in result.warnings)


def test_settings_are_checked():
    acc = Account(name="x")
    with pytest.raises(InvalidInput, match="Night hours"):
        account_settings.set_night(acc, "sometimes", "21:00", "08:00")
    with pytest.raises(InvalidInput, match="Night start"):
        account_settings.set_night(acc, "hold", "25:00", "08:00")
    with pytest.raises(InvalidInput, match="same time"):
        account_settings.set_night(acc, "hold", "08:00", "8:00")
    assert "held until 07:30" in account_settings.set_night(acc, "hold", "22:00", "7:30")
    assert (acc.night_mode, acc.night_start, acc.night_end) == ("hold", "22:00", "07:30")


def test_cli_accounts_set_night(smshub):  # noqa: F811
    assert smshub("accounts", "create", "acme", "--region", "FR")[0] == 0
    code, out, _ = smshub("accounts", "set", "acme", "--night", "hold", "--night-start", "22:00")
    assert code == 0 and "22:00-08:00" in out
    code, out, err = smshub("accounts", "set", "acme", "--night-end", "nine")
    assert code != 0 and "Night end" in out + err
    code, out, _ = smshub("accounts", "set", "acme", "--night", "off")
    assert code == 0 and "off" in out
