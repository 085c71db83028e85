"""The planner's shortcuts (issue #20) give what the general code gives: message ids as
a UUIDv7's hex, the idempotency keys' start strings, the greeting, the all-day notes
worked out once per calendar, and an outbox batch's prices."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hub.core.config import Config
from hub.ports.calendar import Attendee, CalendarEvent, EventStatus
from hub.reminders import all_day, naming, plan_write
from hub.reminders import reconcile as rec_module
from hub.reminders.reconcile import Reconciler
from hub.reminders.rules import parse_offsets
from hub.sending.lookups import RecipientLookups
from hub.sending.submit import credits_for
from hub.store import models
from hub.store.models import Calendar, MessageStatus, MessageType
from tests.conftest import make_config


def _random_bytes(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(16) for _ in range(2000)] + [b"\x00" * 16, b"\xff" * 16]


def _uuid7(ms: int, random_bytes: bytes) -> str:
    """RFC 9562's UUIDv7 of Unix time MS whose random fields are RANDOM_BYTES' last 80 bits
    (rand_a: their top 12 of the low 76, rand_b: their low 62), as hex."""
    r = int.from_bytes(random_bytes[-10:], "big")
    value = ms << 80 | 0x7 << 76 | (r >> 64 & 0xFFF) << 64 | 0b10 << 62 | r & ((1 << 62) - 1)
    made = uuid.UUID(int=value)
    assert made.version == 7 and made.variant == uuid.RFC_4122
    return made.hex


_NOW_NS = 1_796_000_000_123_456_789  # 2026-12: ids made "now" carry its millisecond


def test_new_id_is_uuid7_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.time, "time_ns", lambda: _NOW_NS)
    for data in _random_bytes(1):
        monkeypatch.setattr(models.os, "urandom", lambda n, data=data: data[-n:])
        assert models.new_id() == _uuid7(_NOW_NS // 1_000_000, data)


def test_new_ids_are_uuid7_hex(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _random_bytes(2)
    monkeypatch.setattr(models.time, "time_ns", lambda: _NOW_NS)
    monkeypatch.setattr(models.os, "urandom", lambda n: b"".join(blocks)[:n])
    assert models.new_ids(len(blocks)) == [_uuid7(_NOW_NS // 1_000_000, b) for b in blocks]
    monkeypatch.undo()
    before = time.time_ns() // 1_000_000
    ids = models.new_ids(300)
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 300
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).hex == i for i in ids)
    assert all(before <= uuid.UUID(i).int >> 80 <= after for i in ids)
    # Made later, sorted later: what keeps a new row at the right end of the indexes.
    time.sleep(0.002)
    assert models.new_id() > max(ids)


def test_iso_lookup_is_strftime() -> None:
    rng = random.Random(3)
    zones = [
        UTC,
        ZoneInfo("Europe/Paris"),
        ZoneInfo("America/New_York"),
        timezone(timedelta(hours=5, minutes=30)),
        None,
    ]
    base = datetime(2026, 1, 1)
    values = []
    for _ in range(3000):
        naive = base + timedelta(
            seconds=rng.randrange(0, 3 * 365 * 86400), microseconds=rng.randrange(0, 10**6)
        )
        zone = rng.choice(zones)
        values.append(naive if zone is None else naive.replace(tzinfo=zone))
    # The two 02:30 of Paris' change back to winter time compare equal, and are an hour apart.
    paris = ZoneInfo("Europe/Paris")
    values += [datetime(2026, 10, 25, 2, 30, tzinfo=paris, fold=f) for f in (0, 1, 0, 1)]
    values += [v.astimezone(UTC) for v in values]
    for value in values + values[::-1]:
        assert rec_module._iso(value) == rec_module._format_iso(value)
        assert rec_module._iso(value) == (
            value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        ).strftime("%Y-%m-%dT%H:%M:%SZ")


def _events() -> list[CalendarEvent]:
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    descriptions = ["", "Nom: Jeanne Durand 06 12 34 56 78", "Patient : Paul", "note"]
    attendees = [(), (Attendee("a@b.c", "a@b.c"),), (Attendee("x@y.z", "Marie Curie"),)]
    return [
        CalendarEvent(
            f"u{i}-{j}", "", start, title=f"Kiné {i} 06 12 34 56 7{i}", description=d, attendees=a
        )
        for i, d in enumerate(descriptions)
        for j, a in enumerate(attendees)
    ]


def test_greeting_is_namings_name() -> None:
    contacts = {"+33612345678": "Contact Name", "+33600000000": ""}
    for event in _events():
        for phone in (None, "+33612345678", "+33600000000", "+33699999999"):
            for book in (None, {}, contacts):
                for given in (None, ("", ""), ("Given", naming.DESCRIPTION)):
                    named = naming.naming(event, phone, book, given)
                    assert naming.greeting(event, phone, book, given) == (named.name, named.source)


@pytest.mark.parametrize(
    "offsets", ["1d@09:00", "1d", "2h", "30m", "2d@08:00,3h", "1d,2h,15m", "7d,1d@18:00"]
)
def test_all_day_notes_once_per_calendar(offsets: str, tmp_path: Path) -> None:
    config = _config(tmp_path)
    calendar = Calendar(id=1, account_id=1, name="c", source_type="ics", offsets=offsets)
    rec = Reconciler(config, calendar, "FR")
    parsed = parse_offsets(offsets)
    for flag in (False, True):
        assert rec._inapplicable[flag] == all_day.not_applying(parsed, flag)
        assert rec._skip_notes[flag] == all_day.skip_note(all_day.not_applying(parsed, flag))


def _config(tmp_path: Path, **overrides: Any) -> Config:
    return make_config(f"sqlite:///{tmp_path}/x.db", tmp_path, **overrides)


def test_batch_prices_and_due_times(tmp_path: Path) -> None:
    config = _config(tmp_path, sending={"country_credits": {"FR": 2, "CH": 5}, "max_parts": 10})
    batch = plan_write._Batch(config, 1, 1, None, [1], RecipientLookups(), lambda n: None)
    rng = random.Random(4)
    seen_ids = set()
    for i in range(1500):
        country = rng.choice(["FR", "CH", "BE", None, ""])
        when = batch.now + timedelta(milliseconds=rng.randrange(-3000, 3000))
        text = "x" * rng.randrange(1, 800)
        sub = plan_write.Submission(
            i, "1d", when, when, "+33612345678", country, text, f"k{i}", "l"
        )
        info = plan_write.check_text(config, text)
        row = batch._row(sub, models.new_id(), "k", text, info, country)
        assert row["credits"] == credits_for(config, country, info.segments)
        scheduled = when > batch.now + timedelta(seconds=1)
        assert row["scheduled"] is scheduled
        assert row["due_at"] == (when if scheduled else batch.now)
        outcome = plan_write.Outcome(sub)
        made = batch.message_row(outcome)
        assert made is not None and made["id"] not in seen_ids
        assert uuid.UUID(made["id"]).version == 7
        seen_ids.add(made["id"])


def test_event_values_status_is_the_enum_value() -> None:
    from hub.reminders.plan_state import event_values

    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    for status in EventStatus:
        event = CalendarEvent("u", "", start, status=status)
        assert event_values(event)["status"] == status.value
        assert type(event_values(event)["status"]) is type(status.value)
    assert MessageType.ALERT.value == plan_write._ALERT
    assert MessageStatus.QUEUED.value == plan_write._QUEUED


PLAIN_TEMPLATES = [
    "",
    "Hi {{ name }}, {{ start|date('EEEE d MMMM') }} {{ start|time('HH:mm') }} {{ location }}",
    "{% if name %}{{ name }}{% else %}Hello{% endif %} {{ title }}{% if not all_day %}"
    " {{ start|time }}{% endif %} {{ start|date }} {{ start|datetime('short') }}",
    "{% if location %}{% if not name %}x{% endif %}{{ location }}{% endif %}\n\n  {{ title }}  ",
    "{{ start|time('zzzz h:mm a') }} {{ start|date('qqqq') }}",
    "{{ start|time('invalid pattern [') }}",
    "{{ name|upper }} {{ title ~ name }}",
    "{% for i in range(3) %}{{ name }}{% endfor %}",
    "{% if name %}a{% elif title %}b{% endif %}",
    "{{ missing }} {{ name }}",
    "{{ 'x' * 3 }}{{ name }}",
    "{% if start %}{{ start }}{% endif %}",
    "{{ name }}" * 60,
    "{% set name = 'z' %}{{ name }}",
    "{{ name",
]


@pytest.mark.parametrize("template", PLAIN_TEMPLATES)
def test_plain_render_is_jinjas(template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain template rendered without Jinja gives Jinja's text, refusals and errors."""
    from hub.reminders import render

    rng = random.Random(template)
    cases = []
    for _ in range(60):
        zone = rng.choice(["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC"])
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(0, 600_000))
        fields = {
            "name": rng.choice(["", "Jeanne", "  Mme  Rose ", "Ünïcødé 😀", "x" * 300]),
            "title": rng.choice(["", "RDV", "Kiné\tBlanc"]),
            "location": rng.choice(["", "Cabinet, 12 rue", "a\nb"]),
            "all_day": rng.choice([True, False]),
        }
        cases.append(
            (rng.choice(["fr_FR", "en", "de_CH"]), zone, start, rng.choice([1, 2, 10]), fields)
        )

    def outcomes() -> list[tuple[str, str]]:
        found = []
        for locale, zone, start, parts, fields in cases:
            try:
                text = render.render_reminder(
                    template, locale=locale, tz=zone, start=start, max_parts=parts, **fields
                )
                found.append(("text", text))
            except Exception as exc:  # noqa: BLE001 (the comparison is the point)
                found.append((type(exc).__name__, str(exc)))
        return found

    got = outcomes()
    monkeypatch.setattr(render, "_plain", lambda template, locale, tz: None)
    assert got == outcomes()


def test_hub_texts_are_plain() -> None:
    from hub.reminders import render

    for locale in ("fr_FR", "en", "de", "it"):
        assert render._plain("", locale, "Europe/Paris") is not None
        assert render._plain(render.changed_template(locale), locale, "Europe/Paris") is not None
